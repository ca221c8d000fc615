// SPDX-License-Identifier: MIT
/*
 * Guarding a --lazy restore against its snapshot file changing.
 *
 * A lazy restore maps the snapshot's RAM area copy-on-write: until the guest
 * writes a page, that page is the file's. If the file changed afterwards
 * the guest's memory would change under it, and if it were truncated the
 * guest (the whole VMM) would die of SIGBUS. So we hold a read lease on the
 * file: whoever opens it for writing or truncates it is made to wait by the
 * kernel (up to /proc/sys/fs/lease-break-time, 45 s by default) while we are
 * told with a signal. Then, with the guest paused, every page that is not
 * zero is copied into the guest's own memfds, which are mapped in place of
 * the file; the lease goes, and the writer goes on. The guest never notices,
 * and its RAM no longer depends on the file (it is a plain VM from then on).
 *
 * Where no lease can be had (the file is open for writing already, not ours
 * without CAP_LEASE, a filesystem without leases) the restore says so once
 * and runs unguarded: the file must then not change while the VM runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "migration/lazy_guard.h"
#include "migration/migration.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define PAGE 4096

struct lazy_guard {
	struct vm *vm;
	int file_fd;            /* the snapshot, leased */
	int sig_fd;             /* signalfd for the lease-break signal */
	lazy_take_off_fn take_off;
	void *opaque;
	char path[256];
};

static int lease_signal(void)
{
	return SIGRTMIN + 2;
}

void lazy_guard_block_signal(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, lease_signal());
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static bool page_is_zero(const uint8_t *p)
{
	static const uint8_t zero[PAGE];

	return !memcmp(p, zero, PAGE);
}

/* Region r's pages into its memfd (zero pages stay holes), then the memfd
 * mapped where the file was. The guest is paused. */
static int region_to_memfd(struct mem_region *r)
{
	for (uint64_t off = 0; off < r->size; off += PAGE) {
		const uint8_t *p = r->hva + off;

		if (page_is_zero(p))
			continue;
		if (pwrite(r->memfd, p, PAGE, (off_t)off) != PAGE) {
			pr_err("lazy restore: copying RAM into memory: %s", strerror(errno));
			return -1;
		}
	}
	if (mmap(r->hva, r->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, r->memfd, 0) ==
	    MAP_FAILED) {
		pr_err("lazy restore: mapping the copied RAM: %s", strerror(errno));
		return -1;
	}
	r->file_backed = false;
	return 0;
}

/* --lazy=mmap: with the guest paused, every region into its memfd. */
static int map_take_off(struct vm *vm, void *opaque)
{
	int ret = 0;

	(void)opaque;
	vm_pause(vm);
	for (unsigned i = 0; i < vm->mem.nr_regions && ret == 0; i++)
		ret = region_to_memfd(&vm->mem.regions[i]);
	vm_resume(vm);
	return ret;
}

static void guard_stop(struct lazy_guard *g)
{
	event_loop_del(&g->vm->loop, g->sig_fd);
	close(g->sig_fd);
	fcntl(g->file_fd, F_SETLEASE, F_UNLCK);
	close(g->file_fd);
	free(g);
}

/* Main thread: someone wants to change the file. */
static void on_lease_break(void *opaque, uint32_t events)
{
	struct lazy_guard *g = opaque;
	struct signalfd_siginfo si;
	struct vm *vm = g->vm;
	uint64_t t0 = now_ns();
	int ret = 0;

	(void)events;
	if (read(g->sig_fd, &si, sizeof(si)) != sizeof(si))
		return;
	ret = g->take_off(vm, g->opaque);
	if (ret < 0) {
		/* Half-copied is still whole: every region is one or the other. */
		pr_err("lazy restore: %s is being changed and RAM could not be taken off it: "
		       "the guest may see the change", g->path);
	} else {
		pr_info("lazy restore: %s is being changed: guest RAM taken off it first "
			"(%llu ms); the guest no longer depends on the file", g->path,
			(unsigned long long)(now_ns() - t0) / 1000000);
	}
	guard_stop(g);
}

struct lazy_guard *lazy_guard_start(struct vm *vm, int fd, const char *path,
				    lazy_take_off_fn take_off, void *opaque)
{
	struct lazy_guard *g = calloc(1, sizeof(*g));
	char self[64];
	sigset_t set;

	if (!g)
		return NULL;
	g->vm = vm;
	g->take_off = take_off ? take_off : map_take_off;
	g->opaque = opaque;
	g->sig_fd = -1;
	snprintf(g->path, sizeof(g->path), "%s", path);
	/* Our own open file of the very inode the restore mapped (not the
	 * path, which may name another file by now). */
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	g->file_fd = open(self, O_RDONLY | O_CLOEXEC);
	sigemptyset(&set);
	sigaddset(&set, lease_signal());
	if (g->file_fd < 0 || fcntl(g->file_fd, F_SETSIG, lease_signal()) < 0 ||
	    fcntl(g->file_fd, F_SETLEASE, F_RDLCK) < 0) {
		pr_warn("lazy restore: cannot hold a lease on %s (%s): do not change or truncate "
			"it while this VM runs", path, strerror(errno));
		goto unguarded;
	}
	g->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (g->sig_fd < 0 || event_loop_add(&vm->loop, g->sig_fd, EPOLLIN, on_lease_break, g) < 0) {
		pr_warn("lazy restore: cannot watch the lease on %s: do not change it while "
			"this VM runs", path);
		goto unguarded;
	}
	return g;
unguarded:
	if (g->sig_fd >= 0)
		close(g->sig_fd);
	if (g->file_fd >= 0)
		close(g->file_fd);
	free(g);
	return NULL;
}

void lazy_guard_release(struct lazy_guard *g)
{
	if (g)
		guard_stop(g);
}
