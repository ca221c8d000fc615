// SPDX-License-Identifier: MIT
/*
 * `minivmm --migrate URI`: start the migration through the control socket,
 * show progress on stderr (a bar redrawn in place on a terminal, a plain
 * line a second otherwise), and exit 0 only when the destination has the
 * guest (status "completed"). Any other outcome: one error line, exit 1.
 * With --postcopy the client turns postcopy-ram on and has the source switch
 * when its first pass ends (postcopy-start "after-first-pass"); with
 * --postcopy=auto on the source's own rule (docs/migration.md).
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vmm/client.h"
#include "vmm/client_internal.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define POLL_MS          100
#define PLAIN_EVERY_MS   1000
#define MIGRATE_STALL_MS 600000     /* no progress report at all for this long: give up */

struct progress {
	bool tty;
	long long last_plain;
	uint64_t total, remaining, transferred, mbps, total_time, downtime;
	uint64_t setup_time, expected_downtime, rounds, dirty_rate, throttle;
	uint64_t normal, zero, resent;
	uint64_t pc_requests, pc_pushed, pc_requested, pc_p50, pc_p99, pc_block, pc_time;
	bool pc_announced;
	char pc_why[200];
	char status[32];
	char error[512];
};

static uint64_t get_u64(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ? (uint64_t)json_object_get_int64(v) : 0;
}

static void get_str(struct json_object *o, const char *k, char *buf, size_t len)
{
	struct json_object *v;

	snprintf(buf, len, "%s", json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : "");
}

static void postcopy_parse(struct progress *p, struct json_object *info)
{
	struct json_object *pc;

	if (!json_object_object_get_ex(info, "postcopy", &pc))
		return;
	p->pc_requests = get_u64(pc, "postcopy-requests");
	p->pc_pushed = get_u64(pc, "pages-pushed");
	p->pc_requested = get_u64(pc, "pages-requested");
	p->pc_p50 = get_u64(pc, "fault-latency-p50-us");
	p->pc_p99 = get_u64(pc, "fault-latency-p99-us");
	p->pc_block = get_u64(pc, "postcopy-blocktime");
	p->pc_time = get_u64(pc, "postcopy-time");
	get_str(pc, "switch-reason", p->pc_why, sizeof(p->pc_why));
}

static void progress_parse(struct progress *p, struct json_object *info)
{
	struct json_object *ram;

	get_str(info, "status", p->status, sizeof(p->status));
	get_str(info, "error-desc", p->error, sizeof(p->error));
	p->total_time = get_u64(info, "total-time");
	p->setup_time = get_u64(info, "setup-time");
	p->expected_downtime = get_u64(info, "expected-downtime");
	p->throttle = get_u64(info, "cpu-throttle-percentage");
	if (json_object_object_get_ex(info, "ram", &ram)) {
		p->total = get_u64(ram, "total");
		p->remaining = get_u64(ram, "remaining");
		p->transferred = get_u64(ram, "transferred");
		p->mbps = get_u64(ram, "mbps");
		p->rounds = get_u64(ram, "dirty-sync-count");
		p->dirty_rate = get_u64(ram, "dirty-pages-rate");
		p->normal = get_u64(ram, "normal");
		p->zero = get_u64(ram, "duplicate");
		p->resent = get_u64(ram, "pages-resent");
	}
	postcopy_parse(p, info);
}

/* The switch, once, on its own line: when and why. */
static void postcopy_announce(struct progress *p)
{
	if (p->pc_announced || !p->pc_why[0])
		return;
	p->pc_announced = true;
	if (p->tty)
		fputc('\n', stderr);
	fprintf(stderr, "migrate: switched to postcopy: %s\n", p->pc_why);
}

static void progress_draw(struct progress *p, bool final)
{
	uint64_t done = p->total > p->remaining ? p->total - p->remaining : 0;
	unsigned pct = p->total ? (unsigned)(done * 100 / p->total) : 0;
	double rate = (double)p->mbps / 8.0;    /* MB/s */
	double eta = rate > 0 ? (double)p->remaining / 1e6 / rate : 0;
	char bar[31];

	if (!strcmp(p->status, "completed"))
		pct = 100;
	for (int i = 0; i < 30; i++)
		bar[i] = i < (int)(pct * 30 / 100) ? '=' : ' ';
	bar[30] = 0;
	if (p->tty) {
		fprintf(stderr, "\r[%s] %3u%% %s %llu MiB sent, %.0f MB/s, round %llu, "
			"throttle %llu%%, ETA %.1f s   ", bar, pct, p->status,
			(unsigned long long)(p->transferred >> 20), rate,
			(unsigned long long)p->rounds, (unsigned long long)p->throttle, eta);
		if (final)
			fputc('\n', stderr);
		return;
	}
	if (!final && now_ms() - p->last_plain < PLAIN_EVERY_MS)
		return;
	p->last_plain = now_ms();
	if (final && !strcmp(p->status, "completed") && p->pc_why[0]) {
		fprintf(stderr, "migrate: completed: %llu MiB in %llu ms, downtime %llu ms, postcopy "
			"%llu ms (%llu pages pushed, %llu requested in %llu requests, fault p50 %llu "
			"us p99 %llu us, blocked %llu ms)\n", (unsigned long long)(p->transferred >> 20),
			(unsigned long long)p->total_time, (unsigned long long)p->downtime,
			(unsigned long long)p->pc_time, (unsigned long long)p->pc_pushed,
			(unsigned long long)p->pc_requested, (unsigned long long)p->pc_requests,
			(unsigned long long)p->pc_p50, (unsigned long long)p->pc_p99,
			(unsigned long long)p->pc_block);
		return;
	}
	if (final && !strcmp(p->status, "completed")) {
		fprintf(stderr, "migrate: completed: %llu MiB in %llu ms, downtime %llu ms "
			"(setup %llu ms, %llu rounds, pages %llu normal %llu zero %llu resent, "
			"throttle %llu%%)\n",
			(unsigned long long)(p->transferred >> 20), (unsigned long long)p->total_time,
			(unsigned long long)p->downtime, (unsigned long long)p->setup_time,
			(unsigned long long)p->rounds, (unsigned long long)p->normal,
			(unsigned long long)p->zero, (unsigned long long)p->resent,
			(unsigned long long)p->throttle);
		return;
	}
	fprintf(stderr, "migrate: %s %u%% %llu MiB sent, %.0f MB/s, %llu ms, round %llu, "
		"dirty %llu pages/s, expected downtime %llu ms, throttle %llu%%\n", p->status, pct,
		(unsigned long long)(p->transferred >> 20), rate, (unsigned long long)p->total_time,
		(unsigned long long)p->rounds, (unsigned long long)p->dirty_rate,
		(unsigned long long)p->expected_downtime, (unsigned long long)p->throttle);
}

/* Ask query-migrate; 0 with p updated, -1 if the link failed. */
static int progress_query(struct client *c, struct progress *p)
{
	struct json_object *ret;

	if (client_send_args(c, "query-migrate", NULL) < 0)
		return -1;
	ret = client_reply(c, "query-migrate");
	if (!ret)
		return -1;
	progress_parse(p, ret);
	json_object_put(ret);
	return 0;
}

/* postcopy-paused ends the client's watch too: it needs an operator. */
static bool finished(const char *status)
{
	return !strcmp(status, "completed") || !strcmp(status, "failed") ||
	       !strcmp(status, "cancelled") || !strcmp(status, "postcopy-paused");
}

/* Read events for up to POLL_MS: true once a MIGRATION event says it ended. */
static bool wait_event(struct client *c, struct progress *p, bool *eof)
{
	struct json_object *obj, *ev, *data;

	while ((obj = client_read(c, now_ms() + POLL_MS))) {
		bool end = false;

		if (json_object_object_get_ex(obj, "event", &ev) &&
		    !strcmp(json_object_get_string(ev), "MIGRATION") &&
		    json_object_object_get_ex(obj, "data", &data)) {
			get_str(data, "status", p->status, sizeof(p->status));
			end = finished(p->status);
			/* A completed move's figures come with the event: the VM exits. */
			if (json_object_object_get_ex(data, "ram", NULL)) {
				progress_parse(p, data);
				p->downtime = get_u64(data, "downtime");
			}
		}
		json_object_put(obj);
		if (end)
			return true;
	}
	*eof = errno != ETIMEDOUT;
	return false;
}

/* One command whose answer is {} ; 0 or -1 (printed by client_reply). */
static int simple_cmd(struct client *c, const char *cmd, struct json_object *args)
{
	struct json_object *ret;

	if (client_send_args(c, cmd, args) < 0)
		return -1;
	ret = client_reply(c, cmd);
	if (!ret)
		return -1;
	json_object_put(ret);
	return 0;
}

/* This migration's postcopy settings, all of them: a VM remembers them. */
static int postcopy_setup(struct client *c, int mode)
{
	struct json_object *caps = json_object_new_object(), *list = json_object_new_array();
	struct json_object *cap = json_object_new_object(), *params = json_object_new_object();

	json_object_object_add(cap, "capability", json_object_new_string("postcopy-ram"));
	json_object_object_add(cap, "state", json_object_new_boolean(mode != CLIENT_POSTCOPY_OFF));
	json_object_array_add(list, cap);
	json_object_object_add(caps, "capabilities", list);
	json_object_object_add(params, "postcopy-start", json_object_new_string(
		mode == CLIENT_POSTCOPY_AUTO ? "auto" :
		mode == CLIENT_POSTCOPY_FIRST_PASS ? "after-first-pass" : "manual"));
	if (simple_cmd(c, "migrate-set-capabilities", caps) < 0)
		return -1;
	return simple_cmd(c, "migrate-set-parameters", params);
}

/* --tls-creds DIR: the VM reads the folder, so it gets an absolute path. */
static int tls_setup(struct client *c, const char *dir)
{
	struct json_object *params;
	char *abs = realpath(dir, NULL);

	if (!abs) {
		pr_err("--tls-creds %s: %s", dir, strerror(errno));
		return -1;
	}
	params = json_object_new_object();
	json_object_object_add(params, "tls-creds", json_object_new_string(abs));
	free(abs);
	return simple_cmd(c, "migrate-set-parameters", params);
}

int client_migrate(struct client *c, const struct client_request *req)
{
	struct progress p = { .tty = isatty(STDERR_FILENO) };
	struct json_object *args = json_object_new_object();
	long long deadline = now_ms() + MIGRATE_STALL_MS;
	const char *uri = req->arg;
	bool eof = false;

	json_object_object_add(args, "uri", json_object_new_string(uri));
	if (req->checkpoint)
		json_object_object_add(args, "checkpoint", json_object_new_boolean(1));
	if (req->keep_paused)
		json_object_object_add(args, "keep-source-paused", json_object_new_boolean(1));
	if ((req->postcopy && strncmp(uri, "tcp:", 4) && strncmp(uri, "unix:", 5))) {
		json_object_put(args);
		pr_err("--postcopy goes with a live migration (tcp: or unix:), not '%s'", uri);
		return EXIT_USAGE;
	}
	if (req->tls_creds && tls_setup(c, req->tls_creds) < 0) {
		json_object_put(args);
		return EXIT_USAGE;
	}
	if (req->resume) {
		json_object_object_add(args, "resume", json_object_new_boolean(1));
		if (simple_cmd(c, "migrate", args) < 0)
			return EXIT_VM_FAILURE;
	} else if (postcopy_setup(c, req->postcopy) < 0 || simple_cmd(c, "migrate", args) < 0) {
		return EXIT_VM_FAILURE;
	}

	while (!wait_event(c, &p, &eof)) {
		if (eof || now_ms() > deadline || progress_query(c, &p) < 0)
			break;
		if (finished(p.status))
			break;
		postcopy_announce(&p);
		progress_draw(&p, false);
	}
	/* A completed move closes the socket right after the event: no more
	 * questions, just the last picture. */
	if (!strcmp(p.status, "completed")) {
		p.remaining = 0;
		postcopy_announce(&p);
		progress_draw(&p, true);
		return EXIT_OK;
	}
	if (finished(p.status) && !p.error[0])
		progress_query(c, &p);
	if (p.tty)
		fputc('\n', stderr);
	pr_err("migration to %s %s%s%s", uri, p.status[0] ? p.status : "lost (the VM went away)",
	       p.error[0] ? ": " : "", p.error);
	return EXIT_VM_FAILURE;
}
