// SPDX-License-Identifier: MIT
/*
 * Postcopy, the destination's side.
 *
 * The switch record lists the pages this side lacks: dirtied at the source
 * after they came, or never sent and written since. Before READY their
 * stale copies are dropped (holes punched in the memfds) and all of RAM is
 * registered with userfaultfd, so the first touch of such a page by
 * anyone (a vCPU, KVM itself, a device thread) faults. Every other page is
 * either here already (no fault) or a hole that is zero at the source too,
 * which the fault thread fills with zeroes without asking.
 *
 * A fault on a listed page sends a page request on the return path and
 * returns at once; a receive thread places the page when it arrives
 * (requested, on the source's second connection if there is one, or
 * pushed, on the first: whichever comes first) with UFFDIO_COPY, which
 * wakes whoever waits on it, and only then takes it off the list: a fault
 * that sees a page off the list may zero-fill it, which must never beat
 * the data. A page placed twice finds EEXIST and is left alone; only the
 * thread that takes it off the list counts it.
 *
 * When the list is empty RAM is unregistered, the source hears COMPLETE
 * with our fault figures and the VM owns all of its memory. If the link
 * breaks first, the status is postcopy-paused: vCPUs that touch missing
 * pages wait, the rest of the guest runs on, and we say so.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "migration/migration.h"
#include "migration/postcopy_dst.h"
#include "migration/postcopy_dst_priv.h"
#include "migration/ram_file.h"
#include "migration/uffd.h"
#include "migration/uri.h"
#include "vmm/failpoint.h"
#include "vmm/log.h"
#include "vmm/vm.h"
#include "vmm/lockdown.h"

#define LAT_SAMPLES     65536


uint64_t pcd_mono_us(void)
{
	return now_ns() / 1000;
}

bool pcd_is_needed(struct postcopy_dst *pd, unsigned i, uint64_t page)
{
	return atomic_load(&pd->needed[i][page / 64]) & (1ULL << (page % 64));
}

/* The fault thread: a listed page is asked for, any other is a zero page. */
static int fetch_page(void *opaque, const struct mem_region *r, uint64_t off, void *buf, size_t len)
{
	struct postcopy_dst *pd = opaque;
	unsigned i = (unsigned)(r - pd->vm->mem.regions);
	uint64_t page = off / PAGE, gpa = r->gpa + off;
	uint32_t zero = 0;

	if (!pcd_is_needed(pd, i, page)) {
		memset(buf, 0, len);
		return 0;
	}
	/* Asked for once: the answer wakes every thread waiting on it. */
	if (atomic_compare_exchange_strong(&pd->asked_us[pd->base[i] + page], &zero,
					   (uint32_t)(pcd_mono_us() - pd->t0_us) + 1)) {
		atomic_fetch_add(&pd->faults, 1);
		/* A broken link: the page comes with the recovery (or never). */
		stream_rx_send(pd->rx, REC_PAGE_REQ, &gpa, sizeof(gpa));
	}
	return 1;
}

static void fault_failed(void *opaque)
{
	struct postcopy_dst *pd = opaque;

	if (atomic_exchange(&pd->failed, true) || atomic_load(&pd->stopping))
		return;
	pr_err("incoming migration: postcopy: a guest page could not be placed: stopping the VM");
	vm_request_stop(pd->vm, VM_STOP_ERROR);
}

/* Punch the listed pages out of the memfds, run by run. */
static int drop_stale(struct postcopy_dst *pd)
{
	for (unsigned i = 0; i < pd->vm->mem.nr_regions; i++) {
		const struct mem_region *r = &pd->vm->mem.regions[i];
		uint64_t pages = r->size / PAGE;

		for (uint64_t p = 0; p < pages;) {
			uint64_t q = p;

			if (!pcd_is_needed(pd, i, p)) {
				p++;
				continue;
			}
			while (q < pages && pcd_is_needed(pd, i, q))
				q++;
			if (fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				      (off_t)(p * PAGE), (off_t)((q - p) * PAGE)) < 0) {
				pr_err("incoming migration: postcopy: dropping stale pages: %s",
				       strerror(errno));
				return -1;
			}
			p = q;
		}
	}
	return 0;
}

static void pd_free(struct postcopy_dst *pd)
{
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
		free(pd->needed[i]);
	free(pd->asked_us);
	free(pd->lat_us);
	free(pd->rxbuf);
	pthread_mutex_destroy(&pd->fig_lock);
	free(pd);
}

/* The switch record's one bitmap over all RAM, split per region. */
static int take_list(struct postcopy_dst *pd, const struct record *rec)
{
	struct guest_mem *mem = &pd->vm->mem;
	const uint64_t *map = (const uint64_t *)((const uint8_t *)rec->payload +
						 sizeof(struct postcopy_switch));
	struct postcopy_switch sw;

	memcpy(&sw, rec->payload, sizeof(sw));
	atomic_store(&pd->left, sw.needed);
	pd->session = sw.session;
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		uint64_t pages = mem->regions[i].size / PAGE;

		pd->base[i] = ram_region_offset(mem, i) / PAGE;
		pd->needed[i] = calloc((pages + 63) / 64, sizeof(uint64_t));
		if (!pd->needed[i])
			return -1;
		for (uint64_t p = 0; p < pages; p++) {
			uint64_t g = pd->base[i] + p;

			if (map[g / 64] & (1ULL << (g % 64)))
				pd->needed[i][p / 64] |= 1ULL << (p % 64);
		}
	}
	pd->asked_us = calloc(mem->ram_size / PAGE, sizeof(*pd->asked_us));
	pd->lat_us = calloc(LAT_SAMPLES, sizeof(*pd->lat_us));
	pd->rxbuf = malloc(RAM_BATCH_BYTES(RAM_BATCH_SEND_PAGES));
	return pd->asked_us && pd->lat_us && pd->rxbuf ? 0 : -1;
}

struct postcopy_dst *postcopy_dst_prepare(struct vm *vm, struct stream_rx *rx)
{
	struct postcopy_dst *pd = calloc(1, sizeof(*pd));

	if (pd) {
		pd->lfd = pd->urgent_fd = -1;
		pthread_mutex_init(&pd->fig_lock, NULL);
	}
	if (!pd || (pd->vm = vm, pd->rx = rx, take_list(pd, &rx->postcopy)) < 0) {
		pr_err("incoming migration: postcopy: out of memory");
		goto err;
	}
	if (drop_stale(pd) < 0)
		goto err;
	pd->uffd = uffd_ram_start(&vm->mem, 1, fetch_page, fault_failed, pd);
	if (!pd->uffd)
		goto err;
	pr_info("incoming migration: postcopy: %llu pages to fetch from the source",
		(unsigned long long)atomic_load(&pd->left));
	return pd;
err:
	if (pd)
		pd_free(pd);
	return NULL;
}

static void record_latency(struct postcopy_dst *pd, uint64_t gpage)
{
	uint32_t asked = atomic_exchange(&pd->asked_us[gpage], 0);
	uint64_t us;

	if (!asked)
		return;         /* pushed before anyone touched it */
	us = pcd_mono_us() - pd->t0_us - (asked - 1);
	pthread_mutex_lock(&pd->fig_lock);
	pd->lat_us[pd->nlat++ % LAT_SAMPLES] = (uint32_t)us;
	pd->block_us += us;
	pthread_mutex_unlock(&pd->fig_lock);
}

/* Take pages [page, page + n) of region i off the list once placed;
 * a page the other thread took off first is not counted twice. */
static void placed_run(struct postcopy_dst *pd, unsigned i, uint64_t page, uint64_t n)
{
	for (uint64_t p = page; p < page + n; p++) {
		uint64_t bit = 1ULL << (p % 64);

		if (!(atomic_fetch_and(&pd->needed[i][p / 64], ~bit) & bit))
			continue;
		atomic_fetch_sub(&pd->left, 1);
		atomic_fetch_add(&pd->pages_placed, 1);
		record_latency(pd, pd->base[i] + p);
	}
}

/*
 * One checked batch: place the listed pages, then take them off the list.
 * Runs of consecutive pages that are all still listed and all data (or all
 * zero) go in with one ioctl: the push sends in address order, and one
 * UFFDIO_COPY of a run costs a fraction of one per page.
 */
static int place_batch(struct postcopy_dst *pd, const uint8_t *payload)
{
	struct ram_batch_hdr h;
	const uint64_t *e = (const uint64_t *)(payload + sizeof(h));
	const uint8_t *data;
	uint32_t k = 0;

	memcpy(&h, payload, sizeof(h));
	data = (const uint8_t *)(e + h.count);
	while (k < h.count) {
		uint64_t gpa = e[k] & ~(PAGE - 1);
		bool zero = e[k] & RAM_ENTRY_ZERO;
		const struct mem_region *r = guest_mem_region(&pd->vm->mem, gpa);
		unsigned i = r ? (unsigned)(r - pd->vm->mem.regions) : 0;
		uint64_t page = r ? (gpa - r->gpa) / PAGE : 0, n = 1;

		if (!r || !pcd_is_needed(pd, i, page)) {
			/* outside RAM (checked before) or a second copy */
			data += zero ? 0 : PAGE;
			k++;
			continue;
		}
		while (k + n < h.count && (e[k + n] & ~(PAGE - 1)) == gpa + n * PAGE &&
		       !(e[k + n] & RAM_ENTRY_ZERO) == !zero && page + n < r->size / PAGE &&
		       pcd_is_needed(pd, i, page + n))
			n++;
		if (uffd_ram_place(pd->uffd, r, page * PAGE, zero ? NULL : data, n * PAGE) < 0)
			return -1;
		placed_run(pd, i, page, n);
		data += zero ? 0 : n * PAGE;
		k += (uint32_t)n;
	}
	return 0;
}

/* Every page is in: RAM is the VM's own; tell the source how it went. */
static void complete(struct postcopy_dst *pd)
{
	struct migration *m = pd->vm->mig;
	struct postcopy_stats *ps = &m->stats.postcopy;
	uint64_t n = pd->nlat < LAT_SAMPLES ? pd->nlat : LAT_SAMPLES;
	char text[200];

	/* The requested-pages thread may be placing a page that came twice. */
	if (pd->urgent_started) {
		shutdown(pd->urgent_fd, SHUT_RDWR);
		pthread_join(pd->urgent_thread, NULL);
		pd->urgent_started = false;
	}
	uffd_ram_stop(pd->uffd, NULL);
	pd->uffd = NULL;
	pthread_mutex_lock(&m->stats_lock);
	ps->faults = atomic_load(&pd->faults);
	uffd_latency_percentiles(pd->lat_us, n, &ps->fault_p50_us, &ps->fault_p99_us);
	ps->blocktime_ms = pd->block_us / 1000;
	ps->time_ms = (pcd_mono_us() - pd->t0_us) / 1000;
	ps->pages_pushed = pd->pages_placed;
	m->stats.ram_remaining = 0;
	pthread_mutex_unlock(&m->stats_lock);
	migration_set_status(m, MIG_COMPLETED);
	snprintf(text, sizeof(text), "faults=%llu p50=%llu p99=%llu blocktime=%llu",
		 (unsigned long long)ps->faults, (unsigned long long)ps->fault_p50_us,
		 (unsigned long long)ps->fault_p99_us, (unsigned long long)ps->blocktime_ms);
	if (stream_rx_reply(pd->rx, REPLY_COMPLETE, text) < 0)
		pr_warn("incoming migration: postcopy: cannot tell the source that every page "
			"arrived (%s); the guest has all of them", strerror(errno));
	pr_info("incoming migration: postcopy complete: all of RAM in %llu ms after GO (%llu "
		"pages placed, %llu faults on missing pages, p50 %llu us, p99 %llu us, blocked "
		"%llu ms in all)", (unsigned long long)ps->time_ms,
		(unsigned long long)pd->pages_placed, (unsigned long long)ps->faults,
		(unsigned long long)ps->fault_p50_us, (unsigned long long)ps->fault_p99_us,
		(unsigned long long)ps->blocktime_ms);
}

void pcd_paused(struct postcopy_dst *pd, const char *why)
{
	struct migration *m = pd->vm->mig;

	if (atomic_load(&pd->stopping))
		return;
	migration_set_status(m, MIG_POSTCOPY_PAUSED);
	snprintf(m->error, sizeof(m->error), "postcopy paused: %s; %llu pages are still at the "
		 "source, and vCPUs that touch them wait", why,
		 (unsigned long long)atomic_load(&pd->left));
	pr_err("incoming migration: %s", m->error);
}

/* Pages until every one is in (COMPLETE) or the link breaks (paused). */
void pcd_receive_pages(struct postcopy_dst *pd)
{
	struct chan *c = pd->rx->c;
	struct ram_loader l = { .mem = &pd->vm->mem };

	while (atomic_load(&pd->left) && !atomic_load(&pd->stopping)) {
		struct record rec;

		c->rxbuf = pd->rxbuf;
		c->rxcap = RAM_BATCH_BYTES(RAM_BATCH_SEND_PAGES);
		if (record_read(c, &rec, 0) < 0) {
			if (!atomic_load(&pd->left))
				break;  /* the last page came on the second connection */
			pcd_paused(pd, "the connection to the source broke");
			return;
		}
		if (rec.type != REC_RAM || ram_batch_check(&l, rec.payload, rec.length) < 0) {
			record_free(&rec);
			pcd_paused(pd, "the source sent something other than pages");
			return;
		}
		if (place_batch(pd, rec.payload) < 0) {
			record_free(&rec);
			fault_failed(pd);
			return;
		}
		record_free(&rec);
	}
	if (!atomic_load(&pd->stopping))
		complete(pd);
}

/* The source's second connection: requested pages only, until it closes. */
static void *urgent_thread(void *arg)
{
	struct postcopy_dst *pd = arg;
	struct ram_loader l = { .mem = &pd->vm->mem };
	uint8_t *buf = malloc(RAM_BATCH_BYTES(RAM_BATCH_SEND_PAGES));
	struct chan c;

	pthread_setname_np(pthread_self(), "postcopy-urgent");
	uffd_thread_favour();
	lockdown_thread(THREAD_POSTCOPY_RX);
	chan_init(&c, pd->urgent_fd, false, 0, "incoming migration (requested pages)");
	c.tls = pd->urgent_tls;
	c.rxbuf = buf;
	c.rxcap = buf ? RAM_BATCH_BYTES(RAM_BATCH_SEND_PAGES) : 0;
	c.eof_quiet = true;     /* closed at the end, or with the first connection */
	while (atomic_load(&pd->left) && !atomic_load(&pd->stopping)) {
		struct record rec;

		if (record_read(&c, &rec, REC_RAM) < 0)
			break;  /* the first connection tells what happened */
		if (ram_batch_check(&l, rec.payload, rec.length) < 0 ||
		    place_batch(pd, rec.payload) < 0) {
			record_free(&rec);
			break;
		}
		record_free(&rec);
	}
	/* We placed the last page: wake the first connection's reader to finish. */
	if (!atomic_load(&pd->left) && !atomic_load(&pd->stopping))
		shutdown(pd->rx->c->fd, SHUT_RD);
	free(buf);
	return NULL;
}

static void *receive_thread(void *arg)
{
	pthread_setname_np(pthread_self(), "postcopy-rx");
	lockdown_thread(THREAD_POSTCOPY_RX);
	pcd_receive_pages(arg);
	return NULL;
}

int postcopy_dst_start(struct postcopy_dst *pd, int urgent_fd, struct tls_link *urgent_tls,
		       struct tls_creds *creds)
{
	struct migration *m = pd->vm->mig;
	int one = 1;

	pd->t0_us = pcd_mono_us();
	/* Requests go out at once. (The receive buffer stays as it is: shrunk
	 * under an open window, TCP stalls on zero-window probes.) */
	setsockopt(pd->rx->c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pthread_mutex_lock(&m->stats_lock);
	m->stats.ram_total = pd->vm->mem.ram_size;
	m->stats.postcopy.pages_needed = atomic_load(&pd->left);
	m->stats.ram_remaining = atomic_load(&pd->left) * PAGE;
	pthread_mutex_unlock(&m->stats_lock);
	migration_set_status(m, MIG_POSTCOPY_ACTIVE);
	if (failpoint("dst-postcopy-bad-request")) {
		/* Past RAM, inside a page, then more than the source logs (10). */
		uint64_t bad[12] = { 1ULL << 50, pd->vm->mem.regions[0].gpa + 1 };

		for (unsigned i = 2; i < 12; i++)
			bad[i] = (1ULL << 50) + i * PAGE;
		stream_rx_send(pd->rx, REC_PAGE_REQ, bad, sizeof(bad));
	}
	pd->urgent_fd = urgent_fd;
	pd->urgent_tls = urgent_tls;
	pd->creds = creds;
	if (urgent_fd >= 0) {
		struct timeval forever = { 0 };

		/* Requests may be minutes apart: it ends when the source closes it. */
		setsockopt(urgent_fd, SOL_SOCKET, SO_RCVTIMEO, &forever, sizeof(forever));
		setsockopt(urgent_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (pthread_create(&pd->urgent_thread, NULL, urgent_thread, pd)) {
			pr_err("incoming migration: postcopy: cannot start the receive thread");
			return -1;
		}
		pd->urgent_started = true;
	}
	if (pthread_create(&pd->thread, NULL, receive_thread, pd)) {
		pr_err("incoming migration: postcopy: cannot start the receive thread");
		return -1;
	}
	pd->started = pd->joinable = true;
	pd->vm->mig->pc_dst = pd;
	return 0;
}

void postcopy_dst_stop(struct postcopy_dst *pd)
{
	if (!pd)
		return;
	atomic_store(&pd->stopping, true);
	pd->vm->mig->pc_dst = NULL;
	if (pd->started) {
		pthread_mutex_lock(&pd->rx->send_lock);
		shutdown(pd->rx->c->fd, SHUT_RDWR);
		pthread_mutex_unlock(&pd->rx->send_lock);
	}
	if (pd->joinable)
		pthread_join(pd->thread, NULL);
	if (pd->urgent_started) {
		shutdown(pd->urgent_fd, SHUT_RDWR);
		pthread_join(pd->urgent_thread, NULL);
	}
	if (pd->urgent_fd >= 0)
		close(pd->urgent_fd);
	if (pd->lfd >= 0)
		close(pd->lfd);
	if (pd->started) {
		if (atomic_load(&pd->left))
			pr_warn("incoming migration: postcopy: stopping with %llu pages still at the "
				"source", (unsigned long long)atomic_load(&pd->left));
	}
	if (pd->uffd)
		uffd_ram_stop(pd->uffd, NULL);
	pd->rx->c->rxbuf = NULL;
	if (pd->started)
		close(pd->rx->c->fd);
	pd_free(pd);
}
