// SPDX-License-Identifier: MIT
/*
 * Privileges after set-up (vmm/lockdown.h says the contract).
 *
 * Why per thread: Linux keeps capabilities, uids and seccomp filters per
 * thread; a call made in one thread changes only that thread, and glibc's
 * process-wide setuid() would signal every thread into a syscall their
 * filters forbid. So each thread changes itself, with raw syscalls, at the
 * moment its set-up is done; threads it starts later inherit the result.
 *
 * Why capabilities are dropped only then: the set-up needs them (/dev/kvm,
 * taps, memfds, userfaultfd, binding the control socket); what runs after
 * it (the event loop, migrations, the devices) needs none. docs/security.md
 * lists what still works without them and what does not.
 */
#include <cap-ng.h>
#include <errno.h>
#include <linux/capability.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmm/lockdown.h"
#include "vmm/log.h"

/* Written by lockdown_prepare() before any thread exists; read-only after. */
static struct lockdown_config ld;

/* A ceiling of at least `want` for a limit (we may raise it while root). */
static void limit_at_least(int resource, rlim_t want)
{
	struct rlimit r;

	if (getrlimit(resource, &r) < 0 || r.rlim_cur >= want)
		return;
	r.rlim_cur = want;
	if (r.rlim_max < want)
		r.rlim_max = want;
	setrlimit(resource, &r);        /* unprivileged and low: FIFO stays refused */
}

int lockdown_prepare(const struct lockdown_config *cfg)
{
	ld = *cfg;
	limit_at_least(RLIMIT_RTPRIO, 1);
	limit_at_least(RLIMIT_NICE, 30);        /* 20 - (-10) */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		pr_err("cannot set no_new_privs: %s", strerror(errno));
		return -1;
	}
	/* No exec follows, but nothing should ever gain a capability again. */
	capng_get_caps_process();
	capng_clear(CAPNG_SELECT_BOUNDS);
	if (capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP) &&
	    capng_apply(CAPNG_SELECT_BOUNDS) < 0) {
		pr_err("cannot empty the capability bounding set");
		return -1;
	}
	return seccomp_prepare(!cfg->seccomp_off);
}

static void fatal(const char *what)
{
	pr_err("lockdown: %s: %s; stopping", what, strerror(errno));
	abort();
}

/* --user: this thread's groups, gid and uid (raw: this thread only). */
static void become_user(void)
{
	if ((uid_t)syscall(SYS_geteuid) == ld.uid && (gid_t)syscall(SYS_getegid) == ld.gid)
		return;         /* started by a thread that already did */
	if (syscall(SYS_setgroups, 0, NULL) < 0)
		fatal("dropping supplementary groups");
	if (syscall(SYS_setresgid, ld.gid, ld.gid, ld.gid) < 0)
		fatal("taking the --user gid");
	if (syscall(SYS_setresuid, ld.uid, ld.uid, ld.uid) < 0)
		fatal("taking the --user uid");
}

static void drop_capabilities(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = { { 0 } };

	if (syscall(SYS_capset, &h, d) < 0)
		fatal("dropping capabilities");
}

void lockdown_thread(enum thread_kind kind)
{
	if (kind == THREAD_MAIN && ld.chroot_dir &&
	    (chroot(ld.chroot_dir) < 0 || chdir("/") < 0))
		fatal("entering --chroot");
	if (ld.user_set)
		become_user();
	drop_capabilities();
	seccomp_thread_enter(kind);
}

static void set_caps(uint32_t effective, uint32_t permitted)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = { { 0 } };

	if (syscall(SYS_capget, &h, d) < 0)
		fatal("reading capabilities");
	d[0].permitted &= permitted;    /* ours are all below 32 */
	d[0].effective = effective & d[0].permitted;
	d[0].inheritable = 0;
	memset(&d[1], 0, sizeof(d[1]));
	if (syscall(SYS_capset, &h, d) < 0)
		fatal("changing capabilities");
}

void lockdown_effective_off(void)
{
	set_caps(0, ~0U);
}

void lockdown_receive(uint32_t backend_caps)
{
	uint32_t keep = backend_caps;

	if (ld.user_set)
		keep |= 1U << CAP_SETUID | 1U << CAP_SETGID | 1U << CAP_CHOWN;
	if (ld.chroot_dir)      /* and the search of a jail in a folder of the user's */
		keep |= 1U << CAP_SYS_CHROOT | 1U << CAP_DAC_READ_SEARCH;
	set_caps(keep, keep);
	seccomp_thread_enter(THREAD_RECEIVE);
}
