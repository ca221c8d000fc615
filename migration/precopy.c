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
#include "migration/precopy.h"
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
#define CONNECT_MS      5000
/* The switchover's fixed part, on top of the final pages: freezing vCPUs and
 * devices, state, the READY/GO/RUNNING round trips (1-2 ms measured here). */
#define SWITCH_COST_MS  2

struct sender {
	struct migration *m;
	struct vm *vm;
	struct chan c;
	struct chan ret;        /* the return path: same socket, its own counts */
	struct ram_batch_hdr hdr;
	uint64_t entries[RAM_BATCH_SEND_PAGES];
	/* Pages are copied here before they go out: the guest keeps writing
	 * while we send, and the record's CRC must cover the bytes sent. A
	 * page changed after its copy is dirty again and goes in a later pass.
	 * Each copy is checksummed while it is still in L1. */
	uint8_t *stage;
	unsigned staged;
	uint32_t stage_crc;
	uint64_t pages_data, pages_zero;        /* totals for the end record */
	uint64_t round_bytes;
	uint64_t pass_t0;                       /* this pass began (throughput) */
	uint64_t scan_left;                     /* first pass: RAM not scanned yet */
	uint64_t rate_t0, rate_bytes;           /* for max-bandwidth */
	uint32_t phase;                         /* RAM_PHASE_*: record flags */
};

static void rate_limit(struct sender *s, uint64_t bytes)
{
	uint64_t bw = s->m->max_bandwidth, due_ns;
	struct timespec ts;

	if (!bw)
		return;
	s->rate_bytes += bytes;
	due_ns = s->rate_bytes * 1000000000ULL / bw;
	if (now_ns() - s->rate_t0 < due_ns) {
		uint64_t wait = due_ns - (now_ns() - s->rate_t0);

		ts.tv_sec = (time_t)(wait / 1000000000ULL);
		ts.tv_nsec = (long)(wait % 1000000000ULL);
		nanosleep(&ts, NULL);   /* pacing, not synchronisation */
	}
}

static int batch_flush(struct sender *s)
{
	struct iovec iov[3];
	uint64_t before = s->c.bytes;

	if (!s->hdr.count)
		return 0;
	iov[0] = (struct iovec){ &s->hdr, sizeof(s->hdr) };
	iov[1] = (struct iovec){ s->entries, s->hdr.count * sizeof(uint64_t) };
	iov[2] = (struct iovec){ s->stage, (size_t)s->staged * PAGE };
	if ((s->staged ? record_writev_crc(&s->c, REC_RAM, s->phase, iov, 3, s->stage_crc) :
			 record_writev(&s->c, REC_RAM, s->phase, iov, 2)) < 0)
		return -1;
	s->round_bytes += s->c.bytes - before;
	rate_limit(s, s->c.bytes - before);
	pthread_mutex_lock(&s->m->stats_lock);
	s->m->stats.transferred = s->c.bytes;
	s->m->stats.pages_normal = s->pages_data;
	s->m->stats.pages_zero = s->pages_zero;
	if (s->phase == RAM_PHASE_BULK)
		s->m->stats.ram_remaining = s->scan_left;
	if (now_ns() > s->pass_t0)
		s->m->stats.throughput_bps = s->round_bytes * 1000000000ULL / (now_ns() - s->pass_t0);
	pthread_mutex_unlock(&s->m->stats_lock);
	s->hdr.count = 0;
	s->staged = 0;
	s->stage_crc = 0;
	return migration_cancelled(s->m) ? -1 : 0;
}

/* Queue page `gpa` (host copy at `p`) for sending. */
static int send_page(struct sender *s, uint64_t gpa, const uint8_t *p)
{
	uint8_t *copy;

	if (s->hdr.count == RAM_BATCH_SEND_PAGES && batch_flush(s) < 0)
		return -1;
	copy = s->stage + (size_t)s->staged * PAGE;
	memcpy(copy, p, PAGE);
	if (guest_page_is_zero(copy)) {
		s->entries[s->hdr.count++] = gpa | RAM_ENTRY_ZERO;
		s->pages_zero++;
		return 0;
	}
	s->stage_crc = crc32c(s->stage_crc, copy, PAGE);
	s->entries[s->hdr.count++] = gpa;
	s->staged++;
	s->pages_data++;
	return 0;
}

/* First pass: every page that was ever written (SEEK_DATA on the memfd). */
static int send_all(struct sender *s)
{
	uint64_t scanned = 0;

	for (unsigned i = 0; i < s->vm->mem.nr_regions; i++) {
		struct mem_region *r = &s->vm->mem.regions[i];
		uint64_t pos = 0;

		while (pos < r->size) {
			off_t d = r->file_backed ? (off_t)pos : lseek(r->memfd, (off_t)pos, SEEK_DATA);
			off_t h = r->file_backed ? (off_t)r->size : d < 0 ? -1 : lseek(r->memfd, d, SEEK_HOLE);

			if (d < 0 && errno == ENXIO)
				break;
			if (d < 0 || h < 0) {
				pr_err("SEEK_DATA on guest RAM: %s", strerror(errno));
				return -1;
			}
			for (uint64_t p = (uint64_t)d; p < (uint64_t)h && p < r->size; p += PAGE) {
				/* What is left of the scan: an upper bound, for the progress. */
				s->scan_left = s->vm->mem.ram_size - scanned - p;
				if (send_page(s, r->gpa + p, r->hva + p) < 0)
					return -1;
			}
			pos = (uint64_t)h;
		}
		scanned += r->size;
	}
	s->scan_left = 0;
	return batch_flush(s);
}

/* Send every page set in `bits` (one bitmap per region); clears them. */
static int send_dirty(struct sender *s, uint64_t **bits)
{
	for (unsigned i = 0; i < s->vm->mem.nr_regions; i++) {
		struct mem_region *r = &s->vm->mem.regions[i];
		uint64_t nw = (r->size / PAGE + 63) / 64;

		for (uint64_t w = 0; w < nw; w++) {
			while (bits[i][w]) {
				uint64_t page = w * 64 + (uint64_t)__builtin_ctzll(bits[i][w]);

				bits[i][w] &= bits[i][w] - 1;
				if (send_page(s, r->gpa + page * PAGE, r->hva + page * PAGE) < 0)
					return -1;
			}
		}
	}
	return batch_flush(s);
}

/* Harvest and take everything dirtied into `bits`; returns how many pages
 * `bits` now holds (it may still hold some from an unsent collect). */
static int64_t collect_dirty(struct sender *s, uint64_t **bits)
{
	uint64_t n = 0;

	if (dirty_harvest(s->vm) < 0)
		return -1;
	for (unsigned i = 0; i < s->vm->mem.nr_regions; i++) {
		uint64_t nw = (s->vm->mem.regions[i].size / PAGE + 63) / 64;

		dirty_take(s->vm, i, bits[i]);
		for (uint64_t w = 0; w < nw; w++)
			n += (uint64_t)__builtin_popcountll(bits[i][w]);
	}
	return (int64_t)n;
}

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

static int read_reply(struct sender *s, uint32_t want, const char *phase);

/*
 * Wait until the destination has everything sent so far in guest RAM.
 * Otherwise what sits in socket buffers and its apply queue (megabytes)
 * would be paid for during the downtime. The guest runs meanwhile.
 */
static int sync_destination(struct sender *s)
{
	if (record_write(&s->c, REC_SYNC, 0, NULL, 0) < 0)
		return -1;
	return read_reply(s, REPLY_SYNCED, "to a sync");
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
		int64_t n = collect_dirty(s, bits);

		if (n < 0 || migration_cancelled(s->m))
			return -1;
		dirty = (uint64_t)n;
		expected_ms = bw ? dirty * PAGE * 1000 / bw + SWITCH_COST_MS : UINT64_MAX;
		pr_info("migration: round %u: %llu pages dirty, %.2f GB/s, expected downtime %lld ms, "
			"throttle %u%%%s", round, (unsigned long long)dirty, (double)bw / 1e9,
			expected_ms == UINT64_MAX ? -1LL : (long long)expected_ms, s->vm->throttle_pct,
			synced ? " (destination synced)" : "");
		stats_round(s, dirty, t0 - last, expected_ms == UINT64_MAX ? 0 : expected_ms);
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
		if (send_dirty(s, bits) < 0)
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

static int read_reply(struct sender *s, uint32_t want, const char *phase)
{
	char msg[512];
	uint32_t code;

	if (handover_read_reply(&s->ret, &code, msg, sizeof(msg)) < 0) {
		pr_err("destination gave no reply %s", phase);
		return -1;
	}
	if (code == want)
		return 0;
	if (code == REPLY_ERROR)
		pr_err("destination refused the VM: %s", msg);
	else
		pr_err("destination answered %u %s, expected %u", code, phase, want);
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
	if (collect_dirty(s, bits) < 0 || send_dirty(s, bits) < 0)
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
	    read_reply(s, REPLY_READY, "after the end record") < 0)
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

static int open_channel(struct sender *s, const struct mig_uri *u)
{
	struct timeval tv = { .tv_sec = (time_t)(s->m->stall_timeout_ms / 1000),
			      .tv_usec = (suseconds_t)(s->m->stall_timeout_ms % 1000) * 1000 };
	int fd = uri_connect(u, CONNECT_MS);

	if (fd < 0)
		return -1;
	/* A peer that stops reading or answering ends the migration, not the source. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	chan_init(&s->c, fd, false, 0, s->m->uri);
	chan_init(&s->ret, fd, false, 0, s->m->uri);
	return 0;
}

static int send_preamble(struct sender *s)
{
	struct stream_header h;
	void *machine = NULL;
	size_t len;
	int ret;

	stream_header_init(&h, 0);
	if (machine_save(s->vm, &machine, &len) < 0)
		return -1;
	ret = record_write(&s->c, REC_HEADER, 0, &h, sizeof(h)) < 0 ||
	      record_write(&s->c, REC_MACHINE, 0, machine, len) < 0 ? -1 : 0;
	free(machine);
	return ret;
}

static void bits_free(uint64_t **b)
{
	for (unsigned i = 0; b && i < GUEST_MEM_MAX_REGIONS; i++)
		free(b[i]);
	free(b);
}

static uint64_t **bits_alloc(struct vm *vm)
{
	uint64_t **b = calloc(GUEST_MEM_MAX_REGIONS, sizeof(*b));

	for (unsigned i = 0; b && i < vm->mem.nr_regions; i++) {
		b[i] = calloc((vm->mem.regions[i].size / PAGE + 63) / 64, sizeof(uint64_t));
		if (!b[i]) {
			bits_free(b);
			return NULL;
		}
	}
	return b;
}

/* Everything up to READY; the VM is frozen on success. */
static int precopy_to_ready(struct sender *s, uint64_t **bits)
{
	uint64_t t0;

	t0 = now_ns();
	if (send_preamble(s) < 0 || dirty_log_start(s->vm) < 0)
		return -1;
	migration_set_status(s->m, MIG_ACTIVE);
	s->rate_t0 = s->pass_t0 = now_ns();
	pr_info("migration: dirty logging on after %llu ms", (unsigned long long)(now_ns() - t0) / 1000000);
	/* Logging is on before the first page goes: writes from now on are caught. */
	if (dirty_harvest(s->vm) < 0 || send_all(s) < 0)
		return -1;
	pr_info("migration: first pass (%llu pages) done after %llu ms",
		(unsigned long long)(s->pages_data + s->pages_zero),
		(unsigned long long)(now_ns() - t0) / 1000000);
	if (precopy_rounds(s, bits) < 0)
		return -1;
	pr_info("migration: rounds done after %llu ms", (unsigned long long)(now_ns() - t0) / 1000000);
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
	s->m = m;
	s->vm = m->vm;
	s->c.fd = -1;
	s->stage = malloc(RAM_BATCH_SEND_PAGES * PAGE);
	bits = bits_alloc(s->vm);
	if (!bits || !s->stage || open_channel(s, u) < 0)
		goto out;
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
	ret = 0;
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
	bits_free(bits);
	free(s->stage);
	free(s);
	return ret;
}
