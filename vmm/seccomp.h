/* SPDX-License-Identifier: MIT */
/*
 * seccomp filters, one allow-list per kind of thread.
 *
 * main() calls seccomp_prepare() once, before any thread exists: it builds
 * every kind's BPF program (libseccomp) and the SIGSYS handler's table of
 * syscall names. From then on the module's state is read-only. Each thread
 * calls seccomp_thread_enter() with its kind once its own set-up is done
 * (the main thread: once the guest runs). A syscall outside the list
 * raises SIGSYS; the handler prints one line naming the syscall and the
 * thread, and the process dies of SIGSYS.
 *
 * A thread started by a filtered thread inherits its filter and can only
 * narrow it, so each kind's program allows its own syscalls and those of
 * the kinds it may start afterwards (docs/security.md lists them).
 *
 * THREAD_RECEIVE is a phase, not a thread: a destination's main thread
 * enters it before it reads the first byte of a stream or snapshot, and
 * THREAD_MAIN narrows it once the guest runs. It allows what building a VM
 * takes and what every thread the destination starts may do, and nothing
 * else (no exec, no processes, no executable memory, no unknown ioctl).
 */
#ifndef VMM_SECCOMP_H
#define VMM_SECCOMP_H

#include <stdbool.h>

enum thread_kind {
	THREAD_MAIN,            /* event loop, control socket, console, backends after GO */
	THREAD_VCPU,            /* KVM_RUN and the device emulation it drives */
	THREAD_MEMSLOTS,        /* adds guest RAM to KVM at start */
	THREAD_BLK_IO,          /* virtio-blk workers */
	THREAD_MIGRATION,       /* precopy, snapshot save, postcopy push */
	THREAD_HARVESTER,       /* dirty-ring harvest */
	THREAD_THROTTLE,        /* auto-converge: pauses vCPUs */
	THREAD_DIGEST,          /* query-ram-digest */
	THREAD_APPLIER,         /* incoming RAM into guest memory */
	THREAD_UFFD_FAULT,      /* userfaultfd fault thread (lazy restore, postcopy) */
	THREAD_LAZY_PUSH,       /* lazy restore's background push */
	THREAD_POSTCOPY_RX,     /* postcopy destination: pages in, recovery */
	THREAD_POSTCOPY_REQ,    /* postcopy source: page requests in, pages out */
	THREAD_RECEIVE,         /* a destination's main thread from --incoming until the guest runs */
	THREAD_KINDS
};

/* Build the filters (on) or remember that there are none (off, --seccomp=off).
 * Before any thread starts. -1 with a message if libseccomp fails. */
int seccomp_prepare(bool on);

/* Install this kind's filter on the calling thread (no-op when off). A
 * failure is fatal: the thread would run unfiltered. */
void seccomp_thread_enter(enum thread_kind kind);

/* The kind's name as the SIGSYS line says it ("vcpu", "migration"...). */
const char *seccomp_kind_name(enum thread_kind kind);

#endif
