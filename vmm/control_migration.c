// SPDX-License-Identifier: MIT
/*
 * Control-socket commands for migration and snapshots, in QEMU's names and
 * units: migrate, query-migrate, migrate_cancel, migrate-set-parameters
 * (downtime-limit in ms, max-bandwidth in bytes/s), query-migrate-parameters,
 * migrate-set-capabilities (postcopy-ram), migrate-start-postcopy, and
 * query-ram-digest (a digest of guest RAM while the VM is paused, per
 * region and per 2 MiB chunk, for tests that compare two VMs exactly).
 */
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "migration/crc32c.h"
#include "migration/migration.h"
#include "migration/postcopy_dst.h"
#include "migration/ram_file.h"
#include "vmm/control.h"
#include "vmm/control_migration.h"
#include "vmm/qmp.h"
#include "vmm/vm.h"
#include "vmm/lockdown.h"

#define DIGEST_FMT "%08x"

static struct json_object *hex32(uint32_t v)
{
	char buf[16];

	snprintf(buf, sizeof(buf), DIGEST_FMT, v);
	return json_object_new_string(buf);
}

static void add_u64(struct json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_int64((int64_t)v));
}

int cmd_migrate(struct qmp_request *req)
{
	struct vm *vm = control_req_vm(req);
	const char *uri;
	bool checkpoint = false, keep_paused = false, resume = false;
	char err[256];

	if (qmp_arg_string(req, "uri", true, &uri) < 0 ||
	    qmp_arg_bool(req, "checkpoint", false, &checkpoint) < 0 ||
	    qmp_arg_bool(req, "keep-source-paused", false, &keep_paused) < 0 ||
	    qmp_arg_bool(req, "resume", false, &resume) < 0)
		return -1;
	if (resume) {
		if (migration_resume(vm, uri, err, sizeof(err)) < 0)
			return qmp_error(req, QMP_ERR_GENERIC, "%s", err);
		return 0;
	}
	if (checkpoint && keep_paused)
		return qmp_error(req, QMP_ERR_GENERIC,
				 "checkpoint (keep running) and keep-source-paused exclude each other");
	if (atomic_load(&vm->stop_reason))
		return qmp_error(req, QMP_ERR_GENERIC, "the VM is shutting down");
	if (migration_start(vm, uri, checkpoint ? MIG_AFTER_RUN : keep_paused ? MIG_AFTER_PAUSE :
			    MIG_AFTER_EXIT, err, sizeof(err)) < 0)
		return qmp_error(req, QMP_ERR_GENERIC, "%s", err);
	control_event(vm, "MIGRATION", migration_event_data(vm, MIG_SETUP));
	return 0;
}

static struct json_object *ram_stats_json(const struct migration_stats *st);

/* Postcopy's figures, once the migration switched (either side). */
static void add_postcopy(struct json_object *o, const struct migration_stats *st)
{
	const struct postcopy_stats *ps = &st->postcopy;
	struct json_object *pc;

	if (!ps->why[0] && !ps->pages_needed && !ps->time_ms)
		return;
	pc = json_object_new_object();
	json_object_object_add(pc, "switch-reason", json_object_new_string(ps->why));
	add_u64(pc, "switch-time", ps->switch_ms);
	add_u64(pc, "pages-needed", ps->pages_needed);
	add_u64(pc, "postcopy-requests", ps->requests);
	add_u64(pc, "pages-requested", ps->pages_requested);
	add_u64(pc, "pages-pushed", ps->pages_pushed);
	add_u64(pc, "faults", ps->faults);
	add_u64(pc, "fault-latency-p50-us", ps->fault_p50_us);
	add_u64(pc, "fault-latency-p99-us", ps->fault_p99_us);
	add_u64(pc, "postcopy-blocktime", ps->blocktime_ms);
	add_u64(pc, "postcopy-time", ps->time_ms);
	json_object_object_add(o, "postcopy", pc);
}

struct json_object *migration_event_data(struct vm *vm, int status)
{
	struct json_object *d = json_object_new_object();

	json_object_object_add(d, "status", json_object_new_string(migration_status_name(status)));
	if (status == MIG_COMPLETED && vm->mig->has_digest)
		json_object_object_add(d, "ram-digest", hex32(vm->mig->ram_digest));
	if (status >= MIG_POSTCOPY_ACTIVE) {
		struct migration_stats st;
		char err[512];
		int now;

		migration_query(vm, &now, &st, err, sizeof(err));
		add_postcopy(d, &st);
		if (status == MIG_POSTCOPY_PAUSED)
			json_object_object_add(d, "error-desc", json_object_new_string(vm->mig->error));
	}
	if (status == MIG_COMPLETED) {
		/* The source may exit right after: the figures go with the event. */
		add_u64(d, "total-time", vm->mig->stats.total_time_ms);
		add_u64(d, "setup-time", vm->mig->stats.setup_time_ms);
		add_u64(d, "downtime", vm->mig->stats.downtime_ms);
		add_u64(d, "disk-flush-time", vm->mig->stats.flush_time_ms);
		add_u64(d, "transferred", vm->mig->stats.transferred);
		add_u64(d, "cpu-throttle-percentage", vm->mig->stats.throttle_pct);
		json_object_object_add(d, "ram", ram_stats_json(&vm->mig->stats));
		add_postcopy(d, &vm->mig->stats);
	}
	return d;
}

static struct json_object *ram_stats_json(const struct migration_stats *st)
{
	struct json_object *ram = json_object_new_object();

	add_u64(ram, "transferred", st->transferred);
	add_u64(ram, "total", st->ram_total);
	add_u64(ram, "remaining", st->ram_remaining);
	add_u64(ram, "normal", st->pages_normal);
	add_u64(ram, "duplicate", st->pages_zero);      /* QEMU's name for zero pages */
	add_u64(ram, "dirty-pages-rate", st->dirty_rate_pps);
	add_u64(ram, "dirty-sync-count", st->rounds);
	add_u64(ram, "pages-resent", st->pages_dirty_resent);
	add_u64(ram, "mbps", st->throughput_bps * 8 / 1000000);
	add_u64(ram, "page-size", 4096);
	return ram;
}

int cmd_query_migrate(struct qmp_request *req)
{
	struct vm *vm = control_req_vm(req);
	struct migration_stats st;
	char err[512];
	int status;

	migration_query(vm, &status, &st, err, sizeof(err));
	req->ret = json_object_new_object();
	if (status == MIG_NONE)
		return 0;       /* as QEMU: {} before any migration */
	json_object_object_add(req->ret, "status", json_object_new_string(migration_status_name(status)));
	add_u64(req->ret, "total-time", st.total_time_ms);
	add_u64(req->ret, "setup-time", st.setup_time_ms);
	add_u64(req->ret, "expected-downtime", st.expected_downtime_ms);
	if (status == MIG_COMPLETED) {
		add_u64(req->ret, "downtime", st.downtime_ms);
		add_u64(req->ret, "disk-flush-time", st.flush_time_ms);
	}
	json_object_object_add(req->ret, "ram", ram_stats_json(&st));
	add_u64(req->ret, "cpu-throttle-percentage", st.throttle_pct);
	add_postcopy(req->ret, &st);
	if (*err)
		json_object_object_add(req->ret, "error-desc", json_object_new_string(err));
	if (status == MIG_COMPLETED && vm->mig->has_digest)
		json_object_object_add(req->ret, "ram-digest", hex32(vm->mig->ram_digest));
	return 0;
}

int cmd_migrate_cancel(struct qmp_request *req)
{
	char err[512];

	if (migration_cancel(control_req_vm(req), err, sizeof(err)) < 0)
		return qmp_error(req, QMP_ERR_GENERIC, "%s", err);
	return 0;
}

int cmd_migrate_recover(struct qmp_request *req)
{
	struct vm *vm = control_req_vm(req);
	char err[256], bound[4200];
	const char *uri;

	if (qmp_arg_string(req, "uri", true, &uri) < 0)
		return -1;
	if (!vm->mig->pc_dst)
		return qmp_error(req, QMP_ERR_GENERIC, "migrate-recover: this VM is not the "
				 "destination of a postcopy migration");
	if (postcopy_dst_recover(vm->mig->pc_dst, uri, bound, sizeof(bound), err, sizeof(err)) < 0)
		return qmp_error(req, QMP_ERR_GENERIC, "%s", err);
	req->ret = json_object_new_object();
	json_object_object_add(req->ret, "uri", json_object_new_string(bound));
	return 0;
}

int cmd_migrate_start_postcopy(struct qmp_request *req)
{
	char err[256];

	if (migration_start_postcopy(control_req_vm(req), err, sizeof(err)) < 0)
		return qmp_error(req, QMP_ERR_GENERIC, "%s", err);
	return 0;
}

/* QEMU's shape: {"capabilities": [{"capability": NAME, "state": BOOL}]}. */
int cmd_migrate_set_capabilities(struct qmp_request *req)
{
	struct migration *m = control_req_vm(req)->mig;
	struct json_object *caps, *name, *state;
	bool want[1] = { m->postcopy_ram };

	if (!req->args || !json_object_object_get_ex(req->args, "capabilities", &caps) ||
	    !json_object_is_type(caps, json_type_array))
		return qmp_error(req, QMP_ERR_GENERIC, "capabilities: expected an array of "
				 "{\"capability\": NAME, \"state\": BOOL}");
	for (size_t i = 0; i < json_object_array_length(caps); i++) {
		struct json_object *c = json_object_array_get_idx(caps, i);

		if (!json_object_object_get_ex(c, "capability", &name) ||
		    !json_object_object_get_ex(c, "state", &state) ||
		    !json_object_is_type(state, json_type_boolean))
			return qmp_error(req, QMP_ERR_GENERIC, "capabilities[%zu]: expected "
					 "{\"capability\": NAME, \"state\": BOOL}", i);
		if (strcmp(json_object_get_string(name), "postcopy-ram"))
			return qmp_error(req, QMP_ERR_GENERIC, "capability '%s' is not known here "
					 "(known: postcopy-ram)", json_object_get_string(name));
		want[0] = json_object_get_boolean(state);
	}
	if (m->thread_live)
		return qmp_error(req, QMP_ERR_GENERIC, "a migration is running: capabilities are "
				 "set before migrate");
	m->postcopy_ram = want[0];
	return 0;
}

int cmd_query_migrate_capabilities(struct qmp_request *req)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "capability", json_object_new_string("postcopy-ram"));
	json_object_object_add(o, "state", json_object_new_boolean(control_req_vm(req)->mig->postcopy_ram));
	req->ret = json_object_new_array();
	json_object_array_add(req->ret, o);
	return 0;
}

static const char *const postcopy_when_names[] = {
	[MIG_POSTCOPY_WHEN_MANUAL] = "manual",
	[MIG_POSTCOPY_WHEN_FIRST_PASS] = "after-first-pass",
	[MIG_POSTCOPY_WHEN_AUTO] = "auto",
};

/* The parameter postcopy-start: its MIG_POSTCOPY_WHEN_*, or -1. */
static int postcopy_when_parse(const char *s)
{
	for (int i = 0; i <= MIG_POSTCOPY_WHEN_AUTO; i++)
		if (!strcmp(s, postcopy_when_names[i]))
			return i;
	return -1;
}

int cmd_migrate_set_parameters(struct qmp_request *req)
{
	struct migration *m = control_req_vm(req)->mig;
	int64_t downtime = -1, bw = -1, stall = -1;
	const char *pc_start = NULL, *tls = NULL;
	int pc_when = m->postcopy_when;

	if (qmp_arg_string(req, "postcopy-start", false, &pc_start) < 0 ||
	    qmp_arg_string(req, "tls-creds", false, &tls) < 0 ||
	    qmp_arg_int(req, "downtime-limit", false, &downtime) < 0 ||
	    qmp_arg_int(req, "max-bandwidth", false, &bw) < 0 ||
	    qmp_arg_int(req, "stall-timeout", false, &stall) < 0)
		return -1;
	if ((downtime != -1 && (downtime < 1 || downtime > 2000000)) || bw < -1 ||
	    (stall != -1 && (stall < 100 || stall > 3600000)))
		return qmp_error(req, QMP_ERR_GENERIC,
				 "downtime-limit must be 1..2000000 ms, max-bandwidth >= 0 bytes/s, "
				 "stall-timeout 100..3600000 ms");
	if (pc_start && (pc_when = postcopy_when_parse(pc_start)) < 0)
		return qmp_error(req, QMP_ERR_GENERIC, "postcopy-start must be \"manual\", "
				 "\"after-first-pass\" or \"auto\"");
	if (tls && (strlen(tls) >= sizeof(m->tls_creds) || (tls[0] && tls[0] != '/')))
		return qmp_error(req, QMP_ERR_GENERIC, "tls-creds must be an absolute folder path "
				 "(keys.psk, or ca-cert.pem and client-cert.pem/client-key.pem), or "
				 "\"\" for none");
	if (tls)
		snprintf(m->tls_creds, sizeof(m->tls_creds), "%s", tls);
	if (downtime != -1)
		m->downtime_limit_ms = (uint64_t)downtime;
	if (bw != -1)
		m->max_bandwidth = (uint64_t)bw;
	if (stall != -1)
		m->stall_timeout_ms = (uint64_t)stall;
	m->postcopy_when = pc_when;
	return 0;
}

int cmd_query_migrate_parameters(struct qmp_request *req)
{
	struct migration *m = control_req_vm(req)->mig;

	req->ret = json_object_new_object();
	add_u64(req->ret, "downtime-limit", m->downtime_limit_ms);
	add_u64(req->ret, "max-bandwidth", m->max_bandwidth);
	add_u64(req->ret, "stall-timeout", m->stall_timeout_ms);
	json_object_object_add(req->ret, "postcopy-start",
			       json_object_new_string(postcopy_when_names[m->postcopy_when]));
	json_object_object_add(req->ret, "tls-creds", json_object_new_string(m->tls_creds));
	return 0;
}

/*
 * query-ram-digest hashes all of guest RAM: seconds for large VMs, so on a
 * worker thread while the event loop goes on (the console, other clients).
 * The VM stays paused meanwhile: the job holds a pause of its own, so a
 * `cont` from someone else takes effect only when the digest is done. The
 * per-chunk list is left out where it would not fit a client's output
 * budget (more than 32768 chunks, i.e. 64 GiB of RAM) or when not asked for.
 */
#define DIGEST_CHUNKS_MAX 32768

struct digest_job {
	struct vm *vm;
	struct control_client *client;
	pthread_t thread;
	int efd;
	bool chunks;
	uint64_t n;
	uint32_t *crcs;
	struct ram_stats rs;
	int ret;
	bool threaded;          /* else it ran inline: nothing to join */
};

static struct json_object *digest_json(struct digest_job *j)
{
	struct vm *vm = j->vm;
	struct json_object *ret = json_object_new_object(), *regions = json_object_new_array();

	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		const struct mem_region *r = &vm->mem.regions[i];
		uint64_t first = ram_region_offset(&vm->mem, i) / RAM_CHUNK;
		uint64_t cnt = (r->size + RAM_CHUNK - 1) / RAM_CHUNK;
		struct json_object *o = json_object_new_object();

		add_u64(o, "gpa", r->gpa);
		add_u64(o, "size", r->size);
		json_object_object_add(o, "digest", hex32(crc32c(0, j->crcs + first, cnt * 4)));
		json_object_array_add(regions, o);
	}
	json_object_object_add(ret, "digest", hex32(crc32c(0, j->crcs, j->n * 4)));
	json_object_object_add(ret, "regions", regions);
	if (j->chunks && j->n <= DIGEST_CHUNKS_MAX) {
		struct json_object *chunks = json_object_new_array();

		for (uint64_t i = 0; i < j->n; i++)
			json_object_array_add(chunks, hex32(j->crcs[i]));
		json_object_object_add(ret, "chunks", chunks);
	} else {
		add_u64(ret, "chunks-omitted", j->n);
	}
	add_u64(ret, "pages-present", j->rs.pages_present);
	return ret;
}

static void digest_free(struct digest_job *j)
{
	if (j->efd >= 0) {
		event_loop_del(&j->vm->loop, j->efd);
		close(j->efd);
	}
	free(j->crcs);
	free(j);
}

static void *digest_thread(void *arg)
{
	struct digest_job *j = arg;

	pthread_setname_np(pthread_self(), "ram-digest");
	lockdown_thread(THREAD_DIGEST);
	j->ret = ram_compute_crcs(&j->vm->mem, j->crcs, &j->rs);
	eventfd_write(j->efd, 1);
	return NULL;
}

/* Main thread: the worker is done; answer, and let the VM's pause go. */
static void digest_done(void *opaque, uint32_t events)
{
	struct digest_job *j = opaque;
	eventfd_t v;

	(void)events;
	eventfd_read(j->efd, &v);
	if (j->threaded)
		pthread_join(j->thread, NULL);
	if (j->ret < 0)
		control_answer(j->client, NULL, "cannot read guest RAM");
	else
		control_answer(j->client, digest_json(j), NULL);
	vm_resume(j->vm);
	digest_free(j);
}

/* The client or the VM goes first: wait for the worker, answer nothing. */
static void digest_cancel(void *job)
{
	struct digest_job *j = job;

	if (j->threaded)
		pthread_join(j->thread, NULL);
	vm_resume(j->vm);
	digest_free(j);
}

int cmd_query_ram_digest(struct qmp_request *req)
{
	struct vm *vm = control_req_vm(req);
	struct digest_job *j;
	bool chunks = true;
	int ret;

	if (qmp_arg_bool(req, "chunks", false, &chunks) < 0)
		return -1;
	if (!vm_is_paused(vm))
		return qmp_error(req, QMP_ERR_GENERIC, "query-ram-digest needs a paused VM (stop first)");
	j = calloc(1, sizeof(*j));
	if (!j)
		return qmp_error(req, QMP_ERR_GENERIC, "out of memory");
	j->vm = vm;
	j->chunks = chunks;
	j->efd = -1;
	j->n = ram_nr_chunks(&vm->mem);
	j->crcs = calloc(j->n, sizeof(*j->crcs));
	j->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!j->crcs || j->efd < 0 ||
	    event_loop_add(&vm->loop, j->efd, EPOLLIN, digest_done, j) < 0) {
		digest_free(j);
		return qmp_error(req, QMP_ERR_GENERIC, "cannot start the RAM digest");
	}
	j->client = control_defer(req, digest_cancel, j);
	if (!j->client) {               /* no client to answer later: now */
		ret = ram_compute_crcs(&vm->mem, j->crcs, &j->rs);
		if (ret == 0)
			req->ret = digest_json(j);
		digest_free(j);
		return ret < 0 ? qmp_error(req, QMP_ERR_GENERIC, "cannot read guest RAM") : 0;
	}
	vm_pause(vm);
	j->threaded = pthread_create(&j->thread, NULL, digest_thread, j) == 0;
	if (!j->threaded)
		digest_thread(j);       /* slower, but answered all the same */
	return 0;
}

void control_migration_event(struct vm *vm, int status)
{
	control_event(vm, "MIGRATION", migration_event_data(vm, status));
}
