// SPDX-License-Identifier: MIT
/*
 * Precopy: dirty logging on, all of RAM once (untouched memory skipped:
 * the destination's RAM starts zeroed), then rounds of "harvest, send what
 * was dirtied" until what is left fits in the downtime limit at the
 * bandwidth measured so far; then pause, send the rest and the state, and
 * hand over with READY/GO/RUNNING on the return path (DESIGN.md).
 *
 * If the guest dirties faster than we send, vCPUs are throttled in steps
 * (auto-converge); a vCPU whose dirty ring fills is held until a harvest.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "migration/crc32c.h"
#include "migration/machine.h"
#include "migration/migration.h"
#include "migration/handover.h"
#include "migration/postcopy_src.h"
#include "migration/precopy.h"
#include "migration/ram_sender.h"
#include "migration/stream.h"
#include "migration/uri.h"
#include "migration/vmstate.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define PAGE            GUEST_PAGE_SIZE
#define MAX_ROUNDS      1000
/* Rounds that may still miss the downtime limit with vCPUs throttled all the
 * way (what dirties memory then is not the vCPUs: device DMA, say). */
#define ROUNDS_AT_MAX   20
#define THROTTLE_STEP   20
#define THROTTLE_MAX    99
/* The switchover's fixed part, on top of the final pages: freezing vCPUs and
 * devices, state, the READY/GO/RUNNING round trips (1-2 ms measured here). */
#define SWITCH_COST_MS  2

static void stats_round(struct sender *s, uint64_t dirty, uint64_t round_ns, uint64_t expected_ms)
{
	struct migration_stats *st = &s->m->stats;

	pthread_mutex_lock(&s->m->stats_lock);
	st->rounds++;
	st->ram_remaining = dirty * PAGE;
	st->dirty_rate_pps = round_ns ? dirty * 1000000000ULL / round_ns : 0;
	st->throughput_bps = round_ns ? s->round_bytes * 1000000000ULL / round_ns : 0;
	st->expected_downtime_ms = expected_ms;
	st->throttle_pct = s->vm->throttle_pct;
	pthread_mutex_unlock(&s->m->stats_lock);
}

/*
 * Auto-converge: a pass that does not shrink the dirty set by 10% tightens
 * the throttle by a step, or at once to what the measured rates call for:
 * the guest may dirty at most half as fast as we send, so each round is
 * about half the one before. (The measured dirty rate is a floor: a page
 * written twice in a round counts once.)
 */
static void throttle_step(struct sender *s, uint64_t dirty, uint64_t prev, uint64_t dirty_pps,
			  uint64_t send_pps)
{
	unsigned pct = s->vm->throttle_pct + THROTTLE_STEP;

	if (dirty * 10 < prev * 9)
		return;
	if (send_pps && dirty_pps > send_pps / 2) {
		uint64_t need = 100 - send_pps * 50 / dirty_pps;

		pct = need > pct ? (unsigned)need : pct;
	}
	pct = pct > THROTTLE_MAX ? THROTTLE_MAX : pct;
	if (pct != s->vm->throttle_pct)
		pr_info("migration: dirty rate outruns the link, throttling vCPUs to %u%%", 100 - pct);
	vm_set_throttle(s->vm, pct);
}

/*
 * Wait until the destination has everything sent so far in guest RAM.
 * Otherwise what sits in socket buffers and its apply queue (megabytes)
 * would be paid for during the downtime. The guest runs meanwhile.
 */
static int sync_destination(struct sender *s)
{
	if (record_write(&s->c, REC_SYNC, 0, NULL, 0) < 0)
		return -1;
	return sender_read_reply(s, REPLY_SYNCED, "to a sync");
}

/* Rounds until the rest fits the downtime limit. `bits` keep what is left. */
static int precopy_rounds(struct sender *s, uint64_t **bits)
{
	uint64_t prev = s->pages_data + s->pages_zero, bw = 0, last = s->rate_t0;
	uint64_t expected_ms = UINT64_MAX;
	unsigned at_max = 0;
	bool synced = false;

	/* Until a round is measured, the first pass's rate stands in. */
	if (now_ns() > s->rate_t0)
		bw = s->round_bytes * 1000000000ULL / (now_ns() - s->rate_t0);

	for (unsigned round = 0; round < MAX_ROUNDS && at_max < ROUNDS_AT_MAX; round++) {
		uint64_t t0 = now_ns(), dirty;
		int64_t n = sender_collect(s, bits);

		if (n < 0 || migration_cancelled(s->m))
			return -1;
		dirty = (uint64_t)n;
		expected_ms = bw ? dirty * PAGE * 1000 / bw + SWITCH_COST_MS : UINT64_MAX;
		pr_info("migration: round %u: %llu pages dirty, %.2f GB/s, expected downtime %lld ms, "
			"throttle %u%%%s", round, (unsigned long long)dirty, (double)bw / 1e9,
			expected_ms == UINT64_MAX ? -1LL : (long long)expected_ms, s->vm->throttle_pct,
			synced ? " (destination synced)" : "");
		stats_round(s, dirty, t0 - last, expected_ms == UINT64_MAX ? 0 : expected_ms);
		if (postcopy_wanted(s, round, t0 > last ? dirty * 1000000000ULL / (t0 - last) : 0, bw,
				    expected_ms))
			return 0;
		if (expected_ms <= s->m->downtime_limit_ms) {
			if (synced)
				return 0;
			/* Then count again: what the guest dirtied while we waited. */
			if (sync_destination(s) < 0)
				return -1;
			synced = true;
			continue;
		}
		if (s->vm->throttle_pct >= THROTTLE_MAX)
			at_max++;
		if (!synced)
			throttle_step(s, dirty, prev, t0 > last ? dirty * 1000000000ULL / (t0 - last) : 0,
				      bw / PAGE);
		synced = false;
		prev = dirty;
		last = t0;
		s->round_bytes = 0;
		s->pass_t0 = t0;
		s->phase = RAM_PHASE_ROUND;
		if (sender_dirty(s, bits) < 0)
			return -1;
		pthread_mutex_lock(&s->m->stats_lock);
		s->m->stats.pages_dirty_resent += dirty;
		pthread_mutex_unlock(&s->m->stats_lock);
		if (s->round_bytes && now_ns() > t0)
			bw = s->round_bytes * 1000000000ULL / (now_ns() - t0);
	}
	/* Never a switchover past the limit: the guest goes on here instead. */
	migration_error(s->m, "did not converge: after %llu rounds the pause would take ~%lld ms, "
			"over the downtime limit of %llu ms, with the vCPUs throttled to %u%%; the "
			"guest runs on here (raise downtime-limit or max-bandwidth, or quiet the guest)",
			(unsigned long long)s->m->stats.rounds,
			expected_ms == UINT64_MAX ? -1LL : (long long)expected_ms,
			(unsigned long long)s->m->downtime_limit_ms, 100 - s->vm->throttle_pct);
	return -1;
}

/* VM frozen: the rest of RAM, the state, the end record; then READY. */
static int stop_and_copy(struct sender *s, uint64_t **bits)
{
	struct stream_end end = { .ram_size = s->vm->mem.ram_size };
	uint64_t t0 = s->m->pause_ns, t_frozen = now_ns(), t_pages, t_flushed;
	uint64_t pages_before = s->pages_data;
	void *state = NULL;
	size_t len = 0;
	int ret = -1;

	s->phase = RAM_PHASE_FINAL;
	if (sender_collect(s, bits) < 0)
		goto out;
	if (s->scan_stopped)
		postcopy_rest_of_pass(s, bits);
	if ((s->m->postcopy ? postcopy_send_switch(s, bits) : sender_dirty(s, bits)) < 0)
		goto out;
	t_pages = now_ns();
	if (vmstate_save(s->vm, &state, &len) < 0 ||
	    record_write(&s->c, REC_STATE, 0, state, len) < 0)
		goto out;
	/* What the guest wrote to its disks must be on them before the
	 * destination (maybe on another host) can read them: before READY. */
	if (vm_flush_backends(s->vm) < 0)
		goto out;
	t_flushed = now_ns();
	end.records = s->c.records;
	end.pages_present = s->pages_data;
	end.pages_zero = s->pages_zero;
	if (record_write(&s->c, REC_END, 0, &end, sizeof(end)) < 0 ||
	    sender_read_reply(s, REPLY_READY, "after the end record") < 0)
		goto out;
	pr_info("migration: paused: vCPUs out after %.2f ms, %llu final pages sent by %.2f ms, "
		"state %zu bytes, disks flushed by %.2f ms, READY at %.2f ms",
		(double)(t_frozen - t0) / 1e6, (unsigned long long)(s->pages_data - pages_before),
		(double)(t_pages - t0) / 1e6, len, (double)(t_flushed - t0) / 1e6,
		(double)(now_ns() - t0) / 1e6);
	pthread_mutex_lock(&s->m->stats_lock);
	s->m->stats.flush_time_ms = (t_flushed - t_pages) / 1000000;
	pthread_mutex_unlock(&s->m->stats_lock);
	ret = 0;
out:
	free(state);
	return ret;
}

static int send_preamble(struct sender *s)
{
	struct stream_header h;
	void *machine = NULL;
	size_t len;
	int ret;

	stream_header_init(&h, s->urgent_fd >= 0 ? FLAG_URGENT_CHANNEL : 0);
	if (machine_save(s->vm, &machine, &len) < 0)
		return -1;
	ret = record_write(&s->c, REC_HEADER, 0, &h, sizeof(h)) < 0 ||
	      record_write(&s->c, REC_MACHINE, 0, machine, len) < 0 ? -1 : 0;
	free(machine);
	return ret;
}

/* Everything up to READY; the VM is frozen on success. */
static int precopy_to_ready(struct sender *s, uint64_t **bits)
{
	uint64_t t0;

	t0 = now_ns();
	if (send_preamble(s) < 0 || sender_urgent_hello(s) < 0 || dirty_log_start(s->vm) < 0)
		return -1;
	migration_set_status(s->m, MIG_ACTIVE);
	s->rate_t0 = s->pass_t0 = now_ns();
	pr_info("migration: dirty logging on after %llu ms", (unsigned long long)(now_ns() - t0) / 1000000);
	/* Logging is on before the first page goes: writes from now on are caught. */
	if (dirty_harvest(s->vm) < 0 || sender_all(s) < 0)
		return -1;
	pr_info("migration: first pass (%llu pages) done after %llu ms",
		(unsigned long long)(s->pages_data + s->pages_zero),
		(unsigned long long)(now_ns() - t0) / 1000000);
	if (s->scan_stopped ? !postcopy_wanted(s, POSTCOPY_MID_PASS, 0, 0, 0) :
	    precopy_rounds(s, bits) < 0)
		return -1;
	pr_info("migration: rounds done after %llu ms", (unsigned long long)(now_ns() - t0) / 1000000);
	/* A switch right at the start would otherwise pause the guest while
	 * the destination still creates its VM. */
	if (s->m->postcopy && s->urgent_fd >= 0 &&
	    handover_wait_receiving(&s->ret, (unsigned)s->m->stall_timeout_ms) < 0)
		return -1;
	s->m->pause_ns = now_ns();
	vmstate_freeze(s->vm);
	migration_set_status(s->m, MIG_DEVICE);
	if (stop_and_copy(s, bits) < 0) {
		vmstate_thaw(s->vm);
		return -1;
	}
	return 0;
}

int precopy_migrate(struct migration *m, const struct mig_uri *u)
{
	struct sender *s = calloc(1, sizeof(*s));
	uint64_t **bits = NULL, end_ns = 0;
	int ret = -1;

	if (!s)
		return -1;
	if (sender_init(s, m) < 0)
		goto out;
	bits = page_bits_alloc(s->vm);
	if (!bits || sender_connect(s, u) < 0)
		goto out;
	if (m->postcopy_ram)
		sender_connect_urgent(s, u);
	migration_set_socket(m, s->c.fd);
	m->stats.setup_time_ms = (now_ns() - m->start_ns) / 1000000;
	if (precopy_to_ready(s, bits) < 0)
		goto out;
	/* A cancel that came before GO still wins; from here on it is too late. */
	migration_set_socket(m, -1);
	if (migration_cancelled(m)) {
		vmstate_thaw(s->vm);
		goto out;
	}
	if (handover(m, &s->c, &s->ret) < 0)
		goto out;
	end_ns = now_ns();      /* the guest runs again, over there */
	pr_info("migration: RUNNING at %.2f ms", (double)(end_ns - m->pause_ns) / 1e6);
	ret = m->postcopy ? postcopy_serve(s, bits) : 0;
out:
	if (!end_ns)
		end_ns = now_ns();
	vm_set_throttle(s->vm, 0);
	dirty_log_stop(s->vm);
	pthread_mutex_lock(&m->stats_lock);
	if (m->pause_ns)
		m->stats.downtime_ms = (end_ns - m->pause_ns) / 1000000;
	m->stats.transferred = s->c.bytes;
	pthread_mutex_unlock(&m->stats_lock);
	migration_set_socket(m, -1);
	if (s->c.fd >= 0)
		close(s->c.fd);
	/* Paused postcopy: what the destination lacks waits for a resume. */
	if (atomic_load(&m->status) == MIG_POSTCOPY_PAUSED) {
		m->pc_bits = bits;
		bits = NULL;
	}
	page_bits_free(bits);
	sender_free(s);
	free(s);
	return ret;
}
