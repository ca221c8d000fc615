// SPDX-License-Identifier: MIT
/*
 * --lazy=uffd: restore a snapshot file and run the guest at once, its RAM
 * filled through userfaultfd.
 *
 * With --lazy=ws the snapshot's working set (the pages the guest wrote
 * while it was saved) is brought in first, before any vCPU runs, in large
 * reads: a guest that picks up where it left off then finds its pages in
 * place instead of faulting on them one by one (REAP's insight; here the
 * set is recorded by the save itself, from its dirty rounds).
 *
 * The guest's RAM stays the memfds vm_create() made, registered for MISSING
 * faults before KVM or any device can touch them. A fault reads a 64 KiB
 * block of the file around the page (a guest touching one page mostly
 * touches its neighbours next) and places it; a push thread meanwhile walks
 * the file's data extents in address order, 2 MiB at a time, and places
 * whatever is not in yet (holes are zero pages: nothing to push). When the
 * push ends the main thread unregisters RAM, so pages never written read as
 * zero as they would in any VM, and from then the VM owns its RAM: no file
 * mapping, no lease, nothing to go wrong if the file changes.
 *
 * While the push runs the regions say file_backed: the memfds do not yet
 * hold every page, so savers and migration read RAM through the mapping
 * (the faults fill it) instead of trusting SEEK_DATA. The file is guarded
 * by the same lease as --lazy=mmap; on its break the main thread waits for
 * the push to end (it is already going as fast as it can) before letting
 * the writer go on.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "migration/lazy_guard.h"
#include "migration/lazy_uffd.h"
#include "migration/migration.h"
#include "migration/ram_file.h"
#include "migration/uffd.h"
#include "vmm/failpoint.h"
#include "vmm/log.h"
#include "vmm/vm.h"
#include "vmm/lockdown.h"

#define FAULT_PAGES 16                  /* 64 KiB read per fault */
#define PUSH_BYTES  (2ULL << 20)

struct lazy_uffd {
	struct vm *vm;
	int fd;                         /* the snapshot */
	uint64_t ram_offset;
	struct uffd_ram *uffd;
	struct lazy_guard *guard;
	pthread_t push;
	bool push_started;
	int done_efd;                   /* push thread -> main loop */
	_Atomic bool failed;
	uint64_t t_start;
	uint64_t push_bytes;
	char path[256];
};

static uint64_t region_file_offset(const struct lazy_uffd *lu, const struct mem_region *r)
{
	const struct guest_mem *mem = &lu->vm->mem;

	return lu->ram_offset + ram_region_offset(mem, (unsigned)(r - mem->regions));
}

static int read_snapshot(struct lazy_uffd *lu, uint8_t *buf, uint64_t len, uint64_t pos)
{
	while (len) {
		ssize_t n = pread(lu->fd, buf, len, (off_t)pos);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			pr_err("lazy restore: reading %s: %s", lu->path, strerror(errno));
			return -1;
		}
		if (n == 0) {           /* past the end: the rest is holes */
			memset(buf, 0, len);
			return 0;
		}
		buf += n;
		pos += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

/* The fault thread's page source; the pages are remembered as touched. */
static int fetch(void *opaque, const struct mem_region *r, uint64_t off, void *buf, size_t len)
{
	struct lazy_uffd *lu = opaque;

	bool record = r->touched && !atomic_load(&lu->vm->mem.touched_off);

	for (uint64_t p = off / GUEST_PAGE_SIZE; record && p < (off + len) / GUEST_PAGE_SIZE; p++)
		atomic_fetch_or(&r->touched[p / 64], 1ULL << (p % 64));
	return read_snapshot(lu, buf, len, region_file_offset(lu, r) + off);
}

static bool vm_stopping(const struct lazy_uffd *lu)
{
	return atomic_load(&lu->vm->stop_reason) != VM_RUNNING;
}

static void fail(void *opaque)
{
	struct lazy_uffd *lu = opaque;

	if (atomic_exchange(&lu->failed, true) || vm_stopping(lu))
		return;
	pr_err("lazy restore: a guest page could not be brought in from %s: stopping the VM",
	       lu->path);
	vm_request_stop(lu->vm, VM_STOP_ERROR);
}

/* Region r's data extents in the file, placed where not in yet. */
static int push_region(struct lazy_uffd *lu, const struct mem_region *r, uint8_t *buf)
{
	uint64_t base = region_file_offset(lu, r), pos = 0;

	/* A VM on its way out (quit, saved) needs no more of its RAM. */
	while (pos < r->size && !atomic_load(&lu->failed) && !vm_stopping(lu)) {
		off_t d = lseek(lu->fd, (off_t)(base + pos), SEEK_DATA), h;
		uint64_t end;

		if (d < 0 && errno == ENXIO)
			return 0;       /* holes to the end of the file */
		h = d < 0 ? -1 : lseek(lu->fd, d, SEEK_HOLE);
		if (d < 0 || h < 0) {
			pr_err("lazy restore: SEEK_DATA on %s: %s", lu->path, strerror(errno));
			return -1;
		}
		if ((uint64_t)d >= base + r->size)
			return 0;
		pos = ((uint64_t)d - base) & ~(GUEST_PAGE_SIZE - 1);
		end = (uint64_t)h - base < r->size ? ((uint64_t)h - base + GUEST_PAGE_SIZE - 1) &
						     ~(GUEST_PAGE_SIZE - 1) : r->size;
		while (pos < end) {
			uint64_t len = end - pos < PUSH_BYTES ? end - pos : PUSH_BYTES;

			if (read_snapshot(lu, buf, len, base + pos) < 0 ||
			    uffd_ram_place(lu->uffd, r, pos, buf, len) < 0)
				return -1;
			lu->push_bytes += len;
			pos += len;
		}
	}
	return 0;
}

/* Failpoint lazy-push-after-faults: the push starts only once the guest
 * has taken FAILPOINT_FAULTS faults, so that tests see the fault path. */
#define FAILPOINT_FAULTS 64

static void push_wait_for_faults(struct lazy_uffd *lu)
{
	/* lazy-push-hold: no push while the VM lives, so that every page the
	 * guest touches faults and is recorded for the next save's working set
	 * (a recording run, as REAP makes one). */
	while (failpoint("lazy-push-hold") && !vm_stopping(lu))
		usleep(1000);   /* test-only: bounded by the VM's life */
	if (!failpoint("lazy-push-after-faults"))
		return;
	while (uffd_ram_faults(lu->uffd) < FAILPOINT_FAULTS && !vm_stopping(lu))
		usleep(1000);   /* test-only: polling a counter, bounded by the VM's life */
}

static void *push_thread(void *opaque)
{
	struct lazy_uffd *lu = opaque;
	uint8_t *buf = aligned_alloc(GUEST_PAGE_SIZE, PUSH_BYTES);
	int ret = buf ? 0 : -1;

	pthread_setname_np(pthread_self(), "lazy-push");
	lockdown_thread(THREAD_LAZY_PUSH);
	push_wait_for_faults(lu);
	for (unsigned i = 0; i < lu->vm->mem.nr_regions && ret == 0; i++)
		ret = push_region(lu, &lu->vm->mem.regions[i], buf);
	free(buf);
	if (ret < 0 && !atomic_exchange(&lu->failed, true) && !vm_stopping(lu)) {
		pr_err("lazy restore: RAM could not be read in from %s: stopping the VM", lu->path);
		vm_request_stop(lu->vm, VM_STOP_ERROR);
	}
	eventfd_write(lu->done_efd, 1);
	return NULL;
}

/* Main thread: the push has ended (or must be waited out). */
static int finish(struct lazy_uffd *lu)
{
	struct uffd_stats st;
	uint64_t ms;

	if (!lu->push_started)
		return atomic_load(&lu->failed) ? -1 : 0;
	pthread_join(lu->push, NULL);
	lu->push_started = false;
	event_loop_del(&lu->vm->loop, lu->done_efd);
	if (atomic_load(&lu->failed) || vm_stopping(lu))
		return -1;      /* the VM is stopping; RAM stays registered */
	uffd_ram_stop(lu->uffd, &st);
	lu->uffd = NULL;
	for (unsigned i = 0; i < lu->vm->mem.nr_regions; i++)
		lu->vm->mem.regions[i].file_backed = false;
	lazy_guard_release(lu->guard);
	lu->guard = NULL;
	ms = (now_ns() - lu->t_start) / 1000000;
	pr_info("lazy restore: all of RAM in after %llu ms (%llu MiB pushed, %llu pages placed "
		"by the push, %llu faults for %llu pages, p50 %llu us, p99 %llu us); the guest "
		"no longer depends on %s", (unsigned long long)ms,
		(unsigned long long)(lu->push_bytes >> 20), (unsigned long long)st.pages_placed,
		(unsigned long long)st.faults, (unsigned long long)st.pages_faulted,
		(unsigned long long)st.fault_p50_us, (unsigned long long)st.fault_p99_us, lu->path);
	return 0;
}

static void on_push_done(void *opaque, uint32_t events)
{
	(void)events;
	finish(opaque);
}

/* The lease breaks: the writer waits for the push, then for nothing. */
static int take_off(struct vm *vm, void *opaque)
{
	struct lazy_uffd *lu = opaque;

	(void)vm;
	lu->guard = NULL;       /* the guard lets go of itself after this */
	return finish(lu);
}

struct lazy_uffd *lazy_uffd_start(struct vm *vm, int fd, uint64_t ram_offset, const char *path)
{
	struct lazy_uffd *lu = calloc(1, sizeof(*lu));

	if (!lu) {
		pr_err("lazy restore: out of memory");
		return NULL;
	}
	lu->vm = vm;
	lu->fd = fd;
	lu->ram_offset = ram_offset;
	lu->t_start = now_ns();
	snprintf(lu->path, sizeof(lu->path), "%s", path);
	lu->done_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (lu->done_efd < 0) {
		pr_err("lazy restore: eventfd: %s", strerror(errno));
		goto err;
	}
	lu->uffd = uffd_ram_start(&vm->mem, FAULT_PAGES, fetch, fail, lu);
	if (!lu->uffd)
		goto err;
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		struct mem_region *r = &vm->mem.regions[i];

		r->file_backed = true;
		/* Not recording is no failure: the next save has less to go on. */
		if (!r->touched)
			r->touched = calloc((r->size / GUEST_PAGE_SIZE + 63) / 64, sizeof(uint64_t));
	}
	return lu;
err:
	if (lu->done_efd >= 0)
		close(lu->done_efd);
	free(lu);
	return NULL;
}

/* Pages [p, q) of region r, read and placed PUSH_BYTES at a time. */
static int prefetch_run(struct lazy_uffd *lu, const struct mem_region *r, uint64_t p, uint64_t q,
			uint8_t *buf)
{
	uint64_t base = region_file_offset(lu, r);

	for (uint64_t pos = p * GUEST_PAGE_SIZE; pos < q * GUEST_PAGE_SIZE;) {
		uint64_t len = q * GUEST_PAGE_SIZE - pos < PUSH_BYTES ? q * GUEST_PAGE_SIZE - pos :
			       PUSH_BYTES;

		if (read_snapshot(lu, buf, len, base + pos) < 0 ||
		    uffd_ram_place(lu->uffd, r, pos, buf, len) < 0)
			return -1;
		pos += len;
	}
	return 0;
}

int lazy_uffd_prefetch(struct lazy_uffd *lu, const uint64_t *map, uint64_t count)
{
	const struct guest_mem *mem = &lu->vm->mem;
	uint8_t *buf = aligned_alloc(GUEST_PAGE_SIZE, PUSH_BYTES);
	uint64_t t0 = now_ns();
	int ret = buf ? 0 : -1;

	for (unsigned i = 0; i < mem->nr_regions && ret == 0; i++) {
		uint64_t base = ram_region_offset(mem, i) / GUEST_PAGE_SIZE;
		uint64_t pages = mem->regions[i].size / GUEST_PAGE_SIZE;

		for (uint64_t p = 0; p < pages && ret == 0;) {
			uint64_t q = p;

			while (q < pages && (map[(base + q) / 64] & (1ULL << ((base + q) % 64))))
				q++;
			if (q > p)
				ret = prefetch_run(lu, &mem->regions[i], p, q, buf);
			p = q + 1;
		}
	}
	free(buf);
	if (ret == 0)
		pr_info("lazy restore: working set of %llu pages (%llu MiB) in before the guest "
			"runs, in %llu ms", (unsigned long long)count,
			(unsigned long long)(count * GUEST_PAGE_SIZE >> 20),
			(unsigned long long)(now_ns() - t0) / 1000000);
	return ret;
}

int lazy_uffd_push(struct lazy_uffd *lu)
{
	if (event_loop_add(&lu->vm->loop, lu->done_efd, EPOLLIN, on_push_done, lu) < 0)
		return -1;
	if (pthread_create(&lu->push, NULL, push_thread, lu)) {
		pr_err("lazy restore: cannot start the push thread");
		event_loop_del(&lu->vm->loop, lu->done_efd);
		return -1;
	}
	lu->push_started = true;
	lu->guard = lazy_guard_start(lu->vm, lu->fd, lu->path, take_off, lu);
	return 0;
}
