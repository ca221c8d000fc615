/* SPDX-License-Identifier: MIT */
/*
 * What a minivmm thread may still do once its set-up is over.
 *
 * lockdown_prepare() runs once in main(), before any thread exists: it
 * builds the seccomp filters (vmm/seccomp.h), sets no_new_privs, empties the
 * capability bounding set and lets the fault path's threads keep a real-time
 * priority without privilege (RLIMIT_RTPRIO 1, RLIMIT_NICE for nice -10).
 *
 * lockdown_thread() runs in every thread once its own set-up is done (the
 * main thread: when the guest starts): with --user it takes that uid and
 * gid, it drops every capability (capabilities, uids and filters are per
 * thread in Linux), then installs its kind's filter. The main thread first
 * enters --chroot, which all threads share.
 *
 * docs/security.md says what each step stops and what it costs.
 */
#ifndef VMM_LOCKDOWN_H
#define VMM_LOCKDOWN_H

#include <stdbool.h>
#include <sys/types.h>

#include "vmm/seccomp.h"

struct lockdown_config {
	bool seccomp_off;       /* --seccomp=off: debugging only */
	bool user_set;          /* --user UID:GID */
	uid_t uid;
	gid_t gid;
	const char *chroot_dir; /* --chroot DIR, or NULL */
};

/* -1 with a message if something cannot be set up (exit status 2). */
int lockdown_prepare(const struct lockdown_config *cfg);

/* Fatal on failure: the thread would run with more than it should. */
void lockdown_thread(enum thread_kind kind);

/* The calling thread's effective capabilities off, its permitted ones
 * kept: what it could do unprivileged can then be asked of the kernel
 * (vmm/backend_priv.h). lockdown_receive() follows. */
void lockdown_effective_off(void);

/* A destination's main thread before it reads a stream or snapshot (after
 * it listens: a port below 1024 needs a capability): the receive phase's
 * filter (THREAD_RECEIVE), and of its capabilities only those the rest of
 * set-up needs: backend_caps (a mask of 1 << CAP_*: its files and taps,
 * vmm/backend_priv.h), CAP_SETUID, CAP_SETGID and CAP_CHOWN with --user,
 * CAP_SYS_CHROOT and CAP_DAC_READ_SEARCH with --chroot; none otherwise. The user changes at
 * lockdown_thread(THREAD_MAIN), as on any VM. */
void lockdown_receive(uint32_t backend_caps);

#endif
