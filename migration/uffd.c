// SPDX-License-Identifier: MIT
/*
 * Guest RAM served on demand through userfaultfd.
 *
 * Why userfaultfd and not a private file mapping: the pages end up in the
 * guest's own memfds, so once every page is in, the VM owns its RAM (it can
 * be saved, migrated, restored again) with no tie to where the pages came
 * from; and the one fault handler serves any source of pages (a snapshot
 * file now, a migration peer later).
 *
 * One fault thread reads fault messages and answers each with a block of
 * pages around the faulting one (the fetch callback fills it), placed with
 * UFFDIO_COPY, which is atomic: it fails with EEXIST on a page already
 * present instead of overwriting what the guest may have written there,
 * and it wakes every thread blocked on the range. A block that is all zero
 * is placed with UFFDIO_ZEROPAGE. Meanwhile other threads push pages in
 * with uffd_ram_place() through the same ioctls; a fault on a page that a
 * push placed first finds EEXIST and is woken explicitly.
 *
 * The fault thread must never touch guest RAM itself: it would wait on a
 * fault only it can answer.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "migration/uffd.h"
#include "vmm/log.h"
#include "vmm/lockdown.h"

#define PAGE 4096ULL
#define LATENCY_SAMPLES 65536

struct uffd_ram {
	struct guest_mem *mem;
	int fd;
	int stop_efd;
	unsigned fault_pages;
	uffd_fetch_fn fetch;
	uffd_fail_fn fail;
	void *opaque;
	pthread_t thread;
	bool thread_started;
	_Atomic bool stopping;          /* unregistering: faults left are no error */
	uint8_t *buf;                   /* the fault thread's block */
	uint32_t *lat_us;               /* fault latencies, a ring */
	_Atomic uint64_t faults;
	uint64_t pages_faulted;
	_Atomic uint64_t pages_placed;
};

static uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int uffd_open(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK), dev;

	if (fd >= 0 || errno != EPERM)
		return fd;
	/* Without CAP_SYS_PTRACE: the device grants the same to its users. */
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		errno = EPERM;
		return -1;
	}
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	close(dev);
	return fd;
}

static int uffd_setup(struct uffd_ram *u)
{
	struct uffdio_api api = { .api = UFFD_API };

	u->fd = uffd_open();
	if (u->fd < 0) {
		pr_err("userfaultfd: %s (needs CAP_SYS_PTRACE, vm.unprivileged_userfaultfd=1 or "
		       "access to /dev/userfaultfd)", strerror(errno));
		return -1;
	}
	if (ioctl(u->fd, UFFDIO_API, &api) < 0) {
		pr_err("userfaultfd: UFFDIO_API: %s", strerror(errno));
		return -1;
	}
	if (!(api.features & UFFD_FEATURE_MISSING_SHMEM)) {
		pr_err("userfaultfd: this kernel cannot serve faults on memfd (shmem) memory");
		return -1;
	}
	for (unsigned i = 0; i < u->mem->nr_regions; i++) {
		struct mem_region *r = &u->mem->regions[i];
		struct uffdio_register reg = {
			.range = { .start = (uintptr_t)r->hva, .len = r->size },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};
		const uint64_t need = (1ULL << _UFFDIO_COPY) | (1ULL << _UFFDIO_ZEROPAGE) |
				      (1ULL << _UFFDIO_WAKE);

		if (ioctl(u->fd, UFFDIO_REGISTER, &reg) < 0) {
			pr_err("userfaultfd: registering guest RAM: %s", strerror(errno));
			return -1;
		}
		if ((reg.ioctls & need) != need) {
			pr_err("userfaultfd: guest RAM cannot be filled page by page here");
			return -1;
		}
	}
	return 0;
}

static void wake(int fd, uint8_t *dst, uint64_t len)
{
	struct uffdio_range range = { .start = (uintptr_t)dst, .len = len };

	ioctl(fd, UFFDIO_WAKE, &range);
}

/* Copy or zero [dst, dst + len), page by page past pages already present.
 * src NULL: zeros. Returns pages placed, or -1 (errno). */
static int64_t place(int fd, uint8_t *dst, const uint8_t *src, uint64_t len)
{
	int64_t placed = 0;

	while (len) {
		int64_t done;
		int ret;

		if (src) {
			struct uffdio_copy c = { .dst = (uintptr_t)dst, .src = (uintptr_t)src,
						 .len = len };

			ret = ioctl(fd, UFFDIO_COPY, &c);
			done = ret == 0 ? (int64_t)len : c.copy;
		} else {
			struct uffdio_zeropage z = { .range = { .start = (uintptr_t)dst, .len = len } };

			ret = ioctl(fd, UFFDIO_ZEROPAGE, &z);
			done = ret == 0 ? (int64_t)len : z.zeropage;
		}
		if (done > 0) {
			placed += done / (int64_t)PAGE;
		} else if (errno == EEXIST) {
			/* Present already: whoever placed it woke its waiters;
			 * a fault read before that placement is woken here. */
			wake(fd, dst, PAGE);
			done = PAGE;
		} else if (errno == EAGAIN) {
			continue;       /* the mappings were changing: again */
		} else {
			return -1;
		}
		dst += done;
		if (src)
			src += done;
		len -= (uint64_t)done;
	}
	return placed;
}

int uffd_ram_place(struct uffd_ram *u, const struct mem_region *r, uint64_t off, const void *buf,
		   size_t len)
{
	int64_t n;

	if (off > r->size || len > r->size - off || (off | len) % PAGE) {
		pr_err("userfaultfd: placing pages outside guest RAM");
		return -1;
	}
	n = place(u->fd, r->hva + off, buf, len);
	if (n < 0) {
		pr_err("userfaultfd: placing guest pages: %s", strerror(errno));
		return -1;
	}
	atomic_fetch_add(&u->pages_placed, (uint64_t)n);
	return 0;
}

static bool all_zero(const uint8_t *p, uint64_t len)
{
	for (uint64_t off = 0; off < len; off += PAGE)
		if (!guest_page_is_zero(p + off))
			return false;
	return true;
}

/* One fault at hva `addr`. 0, or -1 with a message. */
static int serve_fault(struct uffd_ram *u, uint64_t addr)
{
	uint64_t t0 = mono_us(), block = u->fault_pages * PAGE, off, len;
	const struct mem_region *r = NULL;
	int64_t n;
	int ret;

	for (unsigned i = 0; i < u->mem->nr_regions && !r; i++) {
		const struct mem_region *c = &u->mem->regions[i];

		if (addr >= (uintptr_t)c->hva && addr - (uintptr_t)c->hva < c->size)
			r = c;
	}
	if (!r) {
		pr_err("userfaultfd: fault at %#llx, outside guest RAM", (unsigned long long)addr);
		return -1;
	}
	off = (addr - (uintptr_t)r->hva) & ~(block - 1);
	len = off + block <= r->size ? block : r->size - off;
	ret = u->fetch(u->opaque, r, off, u->buf, len);
	if (ret < 0)
		return -1;
	if (ret > 0)
		return 0;       /* its placement, by someone else, wakes the fault */
	n = place(u->fd, r->hva + off, all_zero(u->buf, len) ? NULL : u->buf, len);
	if (n < 0) {
		pr_err("userfaultfd: placing a faulted page: %s", strerror(errno));
		return -1;
	}
	u->pages_faulted += (uint64_t)n;
	u->lat_us[atomic_load(&u->faults) % LATENCY_SAMPLES] = (uint32_t)(mono_us() - t0);
	atomic_fetch_add(&u->faults, 1);
	return 0;
}

static void *fault_thread(void *opaque)
{
	struct uffd_ram *u = opaque;
	struct uffd_msg msgs[16];

	pthread_setname_np(pthread_self(), "uffd-fault");
	uffd_thread_favour();
	lockdown_thread(THREAD_UFFD_FAULT);
	for (;;) {
		struct pollfd p[2] = { { .fd = u->fd, .events = POLLIN },
				       { .fd = u->stop_efd, .events = POLLIN } };
		ssize_t n;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		n = read(u->fd, msgs, sizeof(msgs));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			pr_err("userfaultfd: reading faults: %s", strerror(errno));
			goto fail;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			if (serve_fault(u, msgs[i].arg.pagefault.address) < 0)
				goto fail;
		}
	}
	return NULL;
fail:
	if (!atomic_load(&u->stopping))
		u->fail(u->opaque);
	return NULL;
}

struct uffd_ram *uffd_ram_start(struct guest_mem *mem, unsigned fault_pages, uffd_fetch_fn fetch,
				uffd_fail_fn fail, void *opaque)
{
	struct uffd_ram *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	u->mem = mem;
	u->fd = u->stop_efd = -1;
	u->fault_pages = fault_pages ? fault_pages : 1;
	u->fetch = fetch;
	u->fail = fail;
	u->opaque = opaque;
	u->buf = aligned_alloc(PAGE, u->fault_pages * PAGE);
	u->lat_us = calloc(LATENCY_SAMPLES, sizeof(*u->lat_us));
	u->stop_efd = eventfd(0, EFD_CLOEXEC);
	if (!u->buf || !u->lat_us || u->stop_efd < 0) {
		pr_err("userfaultfd: out of memory");
		goto err;
	}
	if (uffd_setup(u) < 0)
		goto err;
	if (pthread_create(&u->thread, NULL, fault_thread, u)) {
		pr_err("userfaultfd: cannot start the fault thread");
		goto err;
	}
	u->thread_started = true;
	return u;
err:
	uffd_ram_stop(u, NULL);
	return NULL;
}

uint64_t uffd_ram_faults(struct uffd_ram *u)
{
	return atomic_load(&u->faults);
}

/*
 * The kernel's struct sched_attr up to sched_period (glibc before 2.41 has
 * no sched_setattr). Real-time FIFO at the lowest priority where we may
 * (CAP_SYS_NICE or RLIMIT_RTPRIO): measured on 2 CPUs with both vCPUs busy,
 * it takes postcopy's fault-to-placement p99 from 3-6 ms to ~0.6 ms, as a
 * woken thread here no longer waits for a vCPU's slice to end. These threads
 * sleep on a file descriptor and work a few microseconds per page, so they
 * cannot starve anyone (and the kernel's RT throttling bounds them anyway).
 * Where FIFO is refused: nice -10 if allowed, and a 100 us slice, which on
 * Linux 6.12+ (EEVDF) lets a woken thread preempt one with a longer slice.
 */
struct sched_attr_v1 {
	uint32_t size, policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime, deadline, period;
};

#define SCHED_FIFO_POLICY       1
#define SCHED_RESET_ON_FORK_FL  1ULL

void uffd_thread_favour(void)
{
	struct sched_attr_v1 a = { .size = sizeof(a), .policy = SCHED_FIFO_POLICY,
				   .flags = SCHED_RESET_ON_FORK_FL, .priority = 1 };
	id_t tid = (id_t)syscall(SYS_gettid);

	if (syscall(SYS_sched_setattr, 0, &a, 0) == 0)
		return;
	setpriority(PRIO_PROCESS, tid, -10);
	a = (struct sched_attr_v1){ .size = sizeof(a), .flags = SCHED_RESET_ON_FORK_FL,
				    .nice = getpriority(PRIO_PROCESS, tid),
				    .runtime = 100 * 1000 };
	syscall(SYS_sched_setattr, 0, &a, 0);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

void uffd_latency_percentiles(uint32_t *us, uint64_t n, uint64_t *p50, uint64_t *p99)
{
	*p50 = *p99 = 0;
	if (!n)
		return;
	qsort(us, n, sizeof(*us), cmp_u32);
	*p50 = us[n / 2];
	*p99 = us[n * 99 / 100];
}

static void fill_stats(struct uffd_ram *u, struct uffd_stats *st)
{
	uint64_t faults = atomic_load(&u->faults);
	uint64_t n = faults < LATENCY_SAMPLES ? faults : LATENCY_SAMPLES;

	memset(st, 0, sizeof(*st));
	st->faults = faults;
	st->pages_faulted = u->pages_faulted;
	st->pages_placed = atomic_load(&u->pages_placed);
	uffd_latency_percentiles(u->lat_us, n, &st->fault_p50_us, &st->fault_p99_us);
}

void uffd_ram_stop(struct uffd_ram *u, struct uffd_stats *st)
{
	uint64_t one = 1;

	atomic_store(&u->stopping, true);
	if (u->fd >= 0) {
		for (unsigned i = 0; i < u->mem->nr_regions; i++) {
			struct mem_region *r = &u->mem->regions[i];
			struct uffdio_range range = { .start = (uintptr_t)r->hva, .len = r->size };

			/* Not registered (set-up failed half way) is no error. */
			ioctl(u->fd, UFFDIO_UNREGISTER, &range);
		}
	}
	if (u->thread_started) {
		if (write(u->stop_efd, &one, sizeof(one)) != sizeof(one))
			pr_warn("userfaultfd: cannot stop the fault thread");
		pthread_join(u->thread, NULL);
	}
	if (st)
		fill_stats(u, st);
	if (u->fd >= 0)
		close(u->fd);
	if (u->stop_efd >= 0)
		close(u->stop_efd);
	free(u->buf);
	free(u->lat_us);
	free(u);
}
