// SPDX-License-Identifier: MIT
/*
 * Postcopy, the source's side.
 *
 * The switch is a stop-and-copy without the pages: the VM freezes, the
 * last harvest names every page the destination does not hold as it is
 * now (dirtied after it was sent, or never sent and written since), that
 * list goes out instead, then state, end, READY, GO, RUNNING as in
 * precopy. From RUNNING on the guest runs over there and this VM never
 * runs again: it serves pages.
 *
 * Requested pages never wait behind the background push. With postcopy-ram
 * the migration opened a second connection at its start (QEMU's
 * "postcopy-preempt" shape): the thread that reads requests from the return
 * path writes the pages at once on that connection, while the migration
 * thread pushes on the first. Without it (it could not be opened, or after
 * a recovery) requests are queued for the migration thread, which checks
 * the queue before every background batch; batches are then small (128 KiB)
 * and the socket buffers too, so a requested page waits behind at most a few
 * hundred KiB. With the second connection the push goes in 1 MiB batches. A page sent on the second connection stays on the push's
 * list (changed atomically by both): the push sends it again, which costs
 * one page per request and means that nothing the second connection
 * carries can be lost if it breaks; the destination keeps the first copy.
 * The push walks the list in address order from just after the last page
 * asked for: a guest that faults on a page mostly wants its neighbours next.
 *
 * A request for an address outside guest RAM is refused and logged. A link
 * that breaks leaves the status postcopy-paused and this VM frozen with
 * every page the destination still lacks.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "migration/handover.h"
#include "migration/postcopy_src.h"
#include "migration/ram_file.h"
#include "migration/uffd.h"
#include "vmm/log.h"
#include "vmm/vm.h"
#include "vmm/lockdown.h"

#define PAGE            GUEST_PAGE_SIZE
#define PUSH_PAGES      32              /* one background batch sharing the link: 128 KiB */
#define PUSH_PAGES_ALONE 256            /* ... with requests on a second connection: 1 MiB */
#define SNDBUF_BYTES    (256 << 10)
#define QUEUE_MAX       65536
#define WAIT_MS         100

struct pc_src {
	struct sender *s;
	uint64_t **bits;                /* pages the destination still lacks (atomic) */
	_Atomic uint64_t left;
	struct sender *urgent;          /* the second connection's sender, or NULL */
	_Atomic bool urgent_dead;       /* ... none, or it failed: requests go to the queue */
	_Atomic uint64_t hint;          /* gpa + 1 of the last page asked for, 0: none */
	pthread_t reader;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t *queue;                /* requested addresses (under lock) */
	unsigned queued;
	bool complete, broken, stop;    /* under lock */
	char why[256];                  /* the break, or COMPLETE's figures */
	uint64_t cursor_region, cursor_page;
	uint64_t t0, bytes0;            /* at the switch: pacing counts from there */
	uint64_t refused;
};

bool postcopy_wanted(struct sender *s, unsigned round, uint64_t dirty_pps, uint64_t send_bps,
		     uint64_t expected_ms)
{
	struct migration *m = s->m;
	char why[160];

	if (!m->postcopy_ram)
		return false;
	if (atomic_load(&m->postcopy_start)) {
		snprintf(why, sizeof(why), "migrate-start-postcopy");
	} else if (m->postcopy_when == MIG_POSTCOPY_WHEN_FIRST_PASS) {
		snprintf(why, sizeof(why), "after the first pass");
	} else if (m->postcopy_when == MIG_POSTCOPY_WHEN_AUTO && expected_ms > m->downtime_limit_ms &&
		   dirty_pps * PAGE * 2 > send_bps) {
		/* Each round would be at least half the one before: precopy
		 * fits the limit only by slowing the guest down. */
		snprintf(why, sizeof(why), "auto: the guest dirties %.0f MB/s, more than half the "
			 "%.0f MB/s sent; the pause would take ~%lld ms, over the %llu ms limit",
			 (double)(dirty_pps * PAGE) / 1e6, (double)send_bps / 1e6,
			 expected_ms == UINT64_MAX ? -1LL : (long long)expected_ms,
			 (unsigned long long)m->downtime_limit_ms);
	} else {
		return false;
	}
	m->postcopy = true;
	pthread_mutex_lock(&m->stats_lock);
	snprintf(m->stats.postcopy.why, sizeof(m->stats.postcopy.why), "%s", why);
	m->stats.postcopy.switch_ms = (now_ns() - m->start_ns) / 1000000;
	pthread_mutex_unlock(&m->stats_lock);
	if (round == POSTCOPY_MID_PASS)
		pr_info("migration: switching to postcopy during the first pass (%llu ms): %s",
			(unsigned long long)m->stats.postcopy.switch_ms, why);
	else
		pr_info("migration: switching to postcopy after round %u (%llu ms): %s", round,
			(unsigned long long)m->stats.postcopy.switch_ms, why);
	return true;
}

int postcopy_send_switch(struct sender *s, uint64_t **bits)
{
	struct guest_mem *mem = &s->vm->mem;
	uint64_t pages = mem->ram_size / PAGE, words = (pages + 63) / 64;
	struct postcopy_switch *sw;
	uint64_t *map;
	size_t len = sizeof(*sw) + words * 8;
	int ret;

	sw = calloc(1, len);
	if (!sw) {
		pr_err("migration: out of memory for the postcopy page list");
		return -1;
	}
	map = (uint64_t *)(sw + 1);
	sw->pages = pages;
	if (getrandom(&s->m->pc_session, sizeof(s->m->pc_session), 0) != sizeof(s->m->pc_session))
		s->m->pc_session = now_ns();    /* names this migration, no secret */
	sw->session = s->m->pc_session;
	sw->needed = ram_bits_to_map(mem, bits, map);
	ret = record_write(&s->c, REC_POSTCOPY, 0, sw, len);
	pthread_mutex_lock(&s->m->stats_lock);
	s->m->stats.postcopy.pages_needed = sw->needed;
	s->m->stats.ram_remaining = sw->needed * PAGE;
	pthread_mutex_unlock(&s->m->stats_lock);
	pr_info("migration: postcopy: %llu pages (%llu MiB) to fetch after the switch",
		(unsigned long long)sw->needed, (unsigned long long)(sw->needed * PAGE >> 20));
	free(sw);
	return ret;
}

static void set_broken(struct pc_src *p, const char *why)
{
	pthread_mutex_lock(&p->lock);
	if (!p->broken && !p->complete) {
		p->broken = true;
		snprintf(p->why, sizeof(p->why), "%.200s", why);
	}
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

static void queue_requests(struct pc_src *p, const uint64_t *gpa, size_t n)
{
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < n && p->queued < QUEUE_MAX; i++)
		p->queue[p->queued++] = gpa[i];
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

static void on_reply(struct pc_src *p, const struct record *rec)
{
	struct stream_reply r;
	char msg[200];

	if (rec->length < sizeof(r)) {
		set_broken(p, "a reply too short to read");
		return;
	}
	memcpy(&r, rec->payload, sizeof(r));
	stream_reply_text(rec, msg, sizeof(msg));
	if (r.code != REPLY_COMPLETE) {
		char why[300];

		snprintf(why, sizeof(why), "the destination answered %u%s%s", r.code,
			 msg[0] ? ": " : "", msg);
		set_broken(p, why);
		return;
	}
	pthread_mutex_lock(&p->lock);
	p->complete = true;
	snprintf(p->why, sizeof(p->why), "%s", msg);
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	/* The destination has every page and reads no more: a push still
	 * going (pages it got on the second connection first) must not wait
	 * on a full socket until the stall timeout. */
	shutdown(p->s->c.fd, SHUT_WR);
}

static int serve_requests(struct pc_src *p, struct sender *s, const uint64_t *req, unsigned n);

/* The return path: page requests, then COMPLETE. */
static void *request_reader(void *arg)
{
	struct pc_src *p = arg;
	struct chan *in = &p->s->ret;

	pthread_setname_np(pthread_self(), "postcopy-req");
	uffd_thread_favour();
	lockdown_thread(THREAD_POSTCOPY_REQ);
	for (;;) {
		struct pollfd pfd = { .fd = in->fd, .events = POLLIN };
		struct record rec;
		bool done;

		pthread_mutex_lock(&p->lock);
		done = p->stop || p->complete || p->broken;
		pthread_mutex_unlock(&p->lock);
		if (done)
			break;
		if (chan_pending(in))
			pfd.revents = POLLIN;   /* TLS holds a decrypted record already */
		else if (poll(&pfd, 1, WAIT_MS) < 0 && errno != EINTR)
			break;
		if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		if (record_read(in, &rec, 0) < 0) {
			set_broken(p, "the connection to the destination broke");
			break;
		}
		if (rec.type == REC_PAGE_REQ && rec.length && rec.length % 8 == 0 &&
		    !atomic_load(&p->urgent_dead)) {
			/* Answered here, at once, on the second connection. If it
			 * fails the first carries on: nothing on it was only there. */
			if (serve_requests(p, p->urgent, rec.payload, (unsigned)(rec.length / 8)) < 0) {
				atomic_store(&p->urgent_dead, true);
				queue_requests(p, rec.payload, rec.length / 8);
			}
		} else if (rec.type == REC_PAGE_REQ && rec.length && rec.length % 8 == 0) {
			queue_requests(p, rec.payload, rec.length / 8);
		}
		else if (rec.type == REC_REPLY)
			on_reply(p, &rec);
		else
			set_broken(p, "the destination sent a record that is not a page request");
		record_free(&rec);
	}
	return NULL;
}

/* guest_mem_region(), and the region's index for the page lists. */
static const struct mem_region *region_of(struct vm *vm, uint64_t gpa, unsigned *idx)
{
	const struct mem_region *r = guest_mem_region(&vm->mem, gpa);

	if (r)
		*idx = (unsigned)(r - vm->mem.regions);
	return r;
}

/* Queue page `page` of region `i` on the first connection if the
 * destination still lacks it, taking it off the list. */
static int send_needed(struct pc_src *p, unsigned i, uint64_t page)
{
	const struct mem_region *r = &p->s->vm->mem.regions[i];
	uint64_t bit = 1ULL << (page % 64);

	if (!(__atomic_fetch_and(&p->bits[i][page / 64], ~bit, __ATOMIC_RELAXED) & bit))
		return 0;       /* sent already: on its way */
	atomic_fetch_sub(&p->left, 1);
	return sender_page(p->s, r->gpa + page * PAGE, r->hva + page * PAGE);
}

/* The second connection: the page whatever the list says (it may have been
 * pushed and wait behind megabytes on the first connection). */
static int send_urgent(struct pc_src *p, unsigned i, uint64_t page)
{
	const struct mem_region *r = &p->s->vm->mem.regions[i];

	return sender_page(p->urgent, r->gpa + page * PAGE, r->hva + page * PAGE);
}

static int serve_requests(struct pc_src *p, struct sender *s, const uint64_t *req, unsigned n)
{
	unsigned sent = 0;

	s->phase = RAM_PHASE_URGENT;
	for (unsigned k = 0; k < n; k++) {
		const struct mem_region *r;
		unsigned i;

		r = region_of(p->s->vm, req[k], &i);
		if (!r || req[k] % PAGE) {
			if (p->refused++ < 10)
				pr_warn("migration: postcopy: the destination asked for %#llx, which is "
					"not a page of guest RAM: refused",
					(unsigned long long)req[k]);
			continue;
		}
		if ((s == p->urgent ? send_urgent(p, i, (req[k] - r->gpa) / PAGE) :
		     send_needed(p, i, (req[k] - r->gpa) / PAGE)) < 0)
			return -1;
		atomic_store(&p->hint, req[k] + 1);
		sent++;
	}
	pthread_mutex_lock(&p->s->m->stats_lock);
	p->s->m->stats.postcopy.requests += n;
	p->s->m->stats.postcopy.pages_requested += sent;
	pthread_mutex_unlock(&p->s->m->stats_lock);
	return sender_flush(s);
}

void postcopy_rest_of_pass(struct sender *s, uint64_t **bits)
{
	struct guest_mem *mem = &s->vm->mem;
	uint64_t added = 0;

	for (unsigned i = s->scan_region; i < mem->nr_regions; i++) {
		struct mem_region *r = &mem->regions[i];
		uint64_t pos = i == s->scan_region ? s->scan_off : 0;

		while (pos < r->size) {
			off_t d = r->file_backed ? (off_t)pos : lseek(r->memfd, (off_t)pos, SEEK_DATA);
			off_t h = r->file_backed ? (off_t)r->size : d < 0 ? -1 : lseek(r->memfd, d, SEEK_HOLE);

			if (d < 0 || h < 0)
				break;  /* ENXIO: no data past pos */
			for (uint64_t p = (uint64_t)d / PAGE; p < (uint64_t)h / PAGE && p < r->size / PAGE; p++)
				if (!(bits[i][p / 64] & (1ULL << (p % 64)))) {
					bits[i][p / 64] |= 1ULL << (p % 64);
					added++;
				}
			pos = (uint64_t)h;
		}
	}
	pr_info("migration: postcopy: %llu pages the first pass had not reached",
		(unsigned long long)added);
}

/* Up to PUSH_PAGES of the pages left, in address order from the cursor. */
static int push_some(struct pc_src *p)
{
	struct vm *vm = p->s->vm;
	uint64_t hint = atomic_exchange(&p->hint, 0);
	unsigned queued = 0, i, most = p->urgent_dead ? PUSH_PAGES : PUSH_PAGES_ALONE;
	uint64_t page;

	/* Go on just after the last page asked for: its neighbours come next. */
	if (hint && region_of(vm, hint - 1, &i)) {
		p->cursor_region = i;
		p->cursor_page = (hint - 1 - vm->mem.regions[i].gpa) / PAGE + 1;
	}
	i = (unsigned)p->cursor_region;
	page = p->cursor_page;
	p->s->phase = RAM_PHASE_POSTCOPY;
	for (unsigned scanned = 0; queued < most && p->left && scanned <= vm->mem.nr_regions;) {
		uint64_t npages = vm->mem.regions[i].size / PAGE;
		uint64_t w = page / 64, v = page < npages ? p->bits[i][w] & (~0ULL << (page % 64)) : 0;

		while (!v && page < npages && ++w < (npages + 63) / 64)
			v = p->bits[i][w];
		if (!v || page >= npages) {
			i = (i + 1) % vm->mem.nr_regions;
			page = 0;
			scanned++;
			continue;
		}
		page = w * 64 + (uint64_t)__builtin_ctzll(v);
		if (send_needed(p, i, page) < 0)
			return -1;
		page++;
		queued++;
	}
	p->cursor_region = i;
	p->cursor_page = page;
	pthread_mutex_lock(&p->s->m->stats_lock);
	p->s->m->stats.postcopy.pages_pushed += queued;
	p->s->m->stats.ram_remaining = p->left * PAGE;
	pthread_mutex_unlock(&p->s->m->stats_lock);
	return sender_flush(p->s);
}

/* Requests so far, after waiting up to wait_ns for one (or COMPLETE or a
 * break) if there is none; false on a break. */
static bool take_requests(struct pc_src *p, uint64_t *req, unsigned *n, uint64_t wait_ns)
{
	bool ok;

	pthread_mutex_lock(&p->lock);
	if (wait_ns && !p->queued && !p->complete && !p->broken) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += (time_t)(wait_ns / 1000000000ULL);
		ts.tv_nsec += (long)(wait_ns % 1000000000ULL);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&p->cond, &p->lock, &ts);
	}
	*n = p->queued;
	memcpy(req, p->queue, p->queued * sizeof(*req));
	p->queued = 0;
	ok = !p->broken;
	pthread_mutex_unlock(&p->lock);
	return ok;
}

/* max-bandwidth holds for the push only: how long until the next batch may
 * go (requests are served meanwhile, never paced). */
static uint64_t push_wait_ns(struct pc_src *p)
{
	uint64_t bw = p->s->m->max_bandwidth, due, now = now_ns();

	if (!p->left)
		return WAIT_MS * 1000000ULL;
	if (!bw)
		return 0;
	due = p->t0 + (p->s->c.bytes - p->bytes0) * 1000000000ULL / bw;
	return due > now ? due - now : 0;
}

/* Nagle off; and with requested pages sharing the connection, a small send
 * buffer: what waits ahead of them is what it holds. */
static void tune_socket(int fd, bool shared)
{
	int one = 1, buf = SNDBUF_BYTES;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (shared)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
}

/* Until COMPLETE or a break. */
static int serve_loop(struct pc_src *p, uint64_t *req)
{
	uint64_t all_sent_ns = 0, stall_ns = p->s->m->stall_timeout_ms * 1000000ULL;
	unsigned n;

	p->t0 = now_ns();
	p->bytes0 = p->s->c.bytes;
	for (;;) {
		if (!take_requests(p, req, &n, push_wait_ns(p)))
			goto out_broken;
		if (n && serve_requests(p, p->s, req, n) < 0)
			goto io_error;
		pthread_mutex_lock(&p->lock);
		if (p->complete) {
			pthread_mutex_unlock(&p->lock);
			return 0;
		}
		pthread_mutex_unlock(&p->lock);
		if (p->left && !push_wait_ns(p) && push_some(p) < 0)
			goto io_error;
		if (!p->left && !all_sent_ns)
			all_sent_ns = now_ns();
		if (all_sent_ns && now_ns() - all_sent_ns > stall_ns) {
			set_broken(p, "every page was sent but the destination did not confirm them");
			goto out_broken;
		}
	}
io_error:
	pthread_mutex_lock(&p->lock);
	if (p->complete) {      /* the write failed because it was over */
		pthread_mutex_unlock(&p->lock);
		return 0;
	}
	pthread_mutex_unlock(&p->lock);
	set_broken(p, "sending pages to the destination failed");
out_broken:
	return -1;
}

static void finish_stats(struct pc_src *p, uint64_t t0)
{
	struct postcopy_stats *ps = &p->s->m->stats.postcopy;
	unsigned long long faults = 0, p50 = 0, p99 = 0, block = 0;

	pthread_mutex_lock(&p->s->m->stats_lock);
	ps->time_ms = (now_ns() - t0) / 1000000;
	/* The destination's figures, as its COMPLETE said them. */
	if (sscanf(p->why, "faults=%llu p50=%llu p99=%llu blocktime=%llu", &faults, &p50, &p99,
		   &block) == 4) {
		ps->faults = faults;
		ps->fault_p50_us = p50;
		ps->fault_p99_us = p99;
		ps->blocktime_ms = block;
	}
	p->s->m->stats.transferred = p->s->c.bytes + (p->urgent ? p->urgent->c.bytes : 0);
	p->s->m->stats.ram_remaining = 0;
	pthread_mutex_unlock(&p->s->m->stats_lock);
}

int postcopy_serve(struct sender *s, uint64_t **bits)
{
	struct pc_src p = { .s = s, .bits = bits };
	uint64_t *req = NULL;
	int ret = -1;

	for (unsigned i = 0; i < s->vm->mem.nr_regions; i++)
		for (uint64_t w = 0; w < (s->vm->mem.regions[i].size / PAGE + 63) / 64; w++)
			p.left += (uint64_t)__builtin_popcountll(bits[i][w]);
	if (!s->m->pc_t0)
		s->m->pc_t0 = now_ns();
	p.queue = malloc(QUEUE_MAX * sizeof(*p.queue));
	req = malloc(QUEUE_MAX * sizeof(*req));
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.cond, NULL);
	migration_set_status(s->m, MIG_POSTCOPY_ACTIVE);
	s->unpaced = true;
	if (s->urgent_fd >= 0 && (p.urgent = calloc(1, sizeof(*p.urgent))) &&
	    sender_init(p.urgent, s->m) == 0) {
		chan_init(&p.urgent->c, s->urgent_fd, false, 0, s->m->uri);
		p.urgent->c.tls = s->urgent_tls;
		p.urgent->unpaced = p.urgent->quiet = true;
		tune_socket(s->urgent_fd, false);
	} else if (p.urgent) {
		free(p.urgent);
		p.urgent = NULL;
	}
	p.urgent_dead = !p.urgent;
	tune_socket(s->c.fd, !p.urgent);
	if (!p.queue || !req || pthread_create(&p.reader, NULL, request_reader, &p)) {
		set_broken(&p, "out of memory or threads");
		goto out;
	}
	queue_requests(&p, s->m->pc_early, s->m->pc_nr_early);
	ret = serve_loop(&p, req);
	pthread_mutex_lock(&p.lock);
	p.stop = true;
	pthread_mutex_unlock(&p.lock);
	pthread_join(p.reader, NULL);
out:
	finish_stats(&p, s->m->pc_t0);
	if (ret == 0) {
		pr_info("migration: postcopy complete after %llu ms: %llu pages pushed, %llu asked "
			"for in %llu requests%s; destination: %s",
			(unsigned long long)s->m->stats.postcopy.time_ms,
			(unsigned long long)s->m->stats.postcopy.pages_pushed,
			(unsigned long long)s->m->stats.postcopy.pages_requested,
			(unsigned long long)s->m->stats.postcopy.requests,
			p.refused ? " (some refused: outside guest RAM)" : "", p.why);
	} else {
		migration_error(s->m, "postcopy paused: %s; the guest runs at the destination and "
				"%llu of its pages are only here, so this VM stays paused and keeps "
				"them", p.why, (unsigned long long)p.left);
		migration_set_status(s->m, MIG_POSTCOPY_PAUSED);
	}
	if (p.urgent) {
		sender_free(p.urgent);
		free(p.urgent);
	}
	pthread_cond_destroy(&p.cond);
	pthread_mutex_destroy(&p.lock);
	free(p.queue);
	free(req);
	return ret;
}
