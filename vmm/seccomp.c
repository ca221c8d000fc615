// SPDX-License-Identifier: MIT
/*
 * seccomp allow-lists per thread kind (vmm/seccomp.h says the contract).
 *
 * Why SIGSYS and a handler rather than SECCOMP_RET_KILL_PROCESS: a kill
 * leaves nothing but an audit record most users never see; the handler
 * writes one line naming the syscall and the thread, then the process dies
 * of SIGSYS all the same (the handler resets the signal to its default and
 * re-raises it, so nothing runs past the forbidden call).
 *
 * Programs are built once, before any thread exists, and loaded with the
 * raw seccomp(2) call: a filtered thread never runs libseccomp. Arguments
 * are checked where the value says what the call does: ioctl requests,
 * socket domains, fcntl commands, prctl options, clone flags (threads only:
 * clone3 answers ENOSYS so glibc falls back to clone, whose flags a filter
 * can see), and no PROT_EXEC in mmap or mprotect after start-up.
 *
 * One exception to "fatal": a kind without openat gets EACCES for it,
 * because glibc's allocator probes /proc/sys/vm/overcommit_memory once,
 * from whichever thread first trims a heap, and copes with a refusal.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/kvm.h>
#include <linux/if_tun.h>
#include <linux/seccomp.h>
#include <linux/sockios.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <ucontext.h>
#include <unistd.h>

#include "vmm/failpoint.h"
#include "vmm/log.h"
#include "vmm/seccomp.h"

#define MAX_VALS   48
#define NAME_SLOTS 512

struct rule {
	int nr;                 /* syscall number */
	int arg;                /* argument checked, -1: none */
	uint64_t mask;          /* compared: (arg & mask) == val, for any listed val */
	unsigned nvals;
	uint64_t vals[MAX_VALS];
};

#define ALLOW(sys)  { .nr = SCMP_SYS(sys), .arg = -1 }
#define ALLOW_ARG(sys, a, ...)                                                  \
	{ .nr = SCMP_SYS(sys), .arg = (a), .mask = 0xffffffffULL,              \
	  .nvals = sizeof((uint64_t[]){ __VA_ARGS__ }) / sizeof(uint64_t),     \
	  .vals = { __VA_ARGS__ } }
#define END { .nr = -1 }

/* What every thread does: memory, locks, logging, time, its own start and end. */
static const struct rule base_rules[] = {
	ALLOW(read), ALLOW(write), ALLOW(writev), ALLOW(close), ALLOW(futex),
	ALLOW(munmap), ALLOW(madvise), ALLOW(mremap), ALLOW(brk),
	ALLOW(rt_sigprocmask), ALLOW(rt_sigreturn), ALLOW(rt_sigaction), ALLOW(sigaltstack),
	ALLOW(exit), ALLOW(exit_group), ALLOW(clock_gettime), ALLOW(clock_nanosleep),
	ALLOW(nanosleep), ALLOW(gettid), ALLOW(getpid), ALLOW(tgkill), ALLOW(sched_yield),
	ALLOW(restart_syscall), ALLOW(getrandom), ALLOW(sysinfo),
	ALLOW(set_robust_list), ALLOW(rseq), ALLOW(sched_getaffinity),
	ALLOW(capset), ALLOW(geteuid), ALLOW(getegid),   /* a new thread's lockdown */
	ALLOW_ARG(prctl, 0, PR_SET_NAME, PR_GET_NAME),
	ALLOW_ARG(seccomp, 0, SECCOMP_SET_MODE_FILTER),
	END
};

/* Threads on a blocked guest's path raise their priority (uffd_thread_favour). */
#define FAVOUR ALLOW(sched_setattr), ALLOW(setpriority), ALLOW(getpriority)

static const struct rule vcpu_rules[] = {
	ALLOW_ARG(ioctl, 1, KVM_RUN, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS,
		  KVM_TRANSLATE, KVM_GET_MSRS, KVM_SET_MSRS, KVM_GET_CLOCK, KVM_SET_CLOCK,
		  KVM_IRQ_LINE, KVM_GET_LAPIC, KVM_SET_LAPIC, KVM_GET_MP_STATE, KVM_SET_MP_STATE,
		  KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS, KVM_KVMCLOCK_CTRL, TUNSETOFFLOAD),
	ALLOW(epoll_ctl), ALLOW(poll), ALLOW(ppoll),
	END
};

static const struct rule memslots_rules[] = {
	ALLOW_ARG(ioctl, 1, KVM_SET_USER_MEMORY_REGION),
	END
};

static const struct rule blk_io_rules[] = {
	ALLOW(pread64), ALLOW(pwrite64), ALLOW(preadv), ALLOW(pwritev), ALLOW(fdatasync),
	ALLOW(fsync), ALLOW(fallocate), ALLOW(poll), ALLOW(ppoll),
	END
};

/* KVM state a save reads, on the VM and on the paused vCPUs. */
#define KVM_SAVE_IOCTLS                                                          \
	KVM_CHECK_EXTENSION, KVM_GET_CLOCK, KVM_SET_CLOCK, KVM_GET_CPUID2,       \
	KVM_GET_DEBUGREGS, KVM_GET_DIRTY_LOG, KVM_GET_IRQCHIP, KVM_GET_LAPIC,    \
	KVM_GET_XSAVE2,                                                          \
	KVM_GET_MP_STATE, KVM_GET_MSRS, KVM_GET_MSR_INDEX_LIST, KVM_GET_REGS,    \
	KVM_GET_SREGS, KVM_GET_VCPU_EVENTS, KVM_GET_XCRS, KVM_GET_XSAVE,         \
	KVM_GET_TSC_KHZ, KVM_RESET_DIRTY_RINGS, KVM_SET_USER_MEMORY_REGION

/* Streams to sockets and files: tcp:, unix:, file: (and resolving a host). */
static const struct rule migration_rules[] = {
	ALLOW_ARG(ioctl, 1, KVM_SAVE_IOCTLS),
	ALLOW_ARG(socket, 0, AF_UNIX, AF_INET, AF_INET6),
	ALLOW(connect), ALLOW(setsockopt), ALLOW(getsockopt), ALLOW(getsockname),
	ALLOW(getpeername), ALLOW(shutdown), ALLOW(sendto), ALLOW(sendmmsg), ALLOW(recvfrom),
	ALLOW(recvmsg), ALLOW(sendmsg), ALLOW(poll), ALLOW(ppoll),
	ALLOW_ARG(fcntl, 1, F_GETFL, F_SETFL, F_GETFD, F_SETFD),
	ALLOW(openat), ALLOW(newfstatat), ALLOW(fstat), ALLOW(lseek), ALLOW(pread64),
	ALLOW(pwrite64), ALLOW(preadv), ALLOW(pwritev), ALLOW(ftruncate), ALLOW(fallocate),
	ALLOW(fsync), ALLOW(fdatasync), ALLOW(rename), ALLOW(unlink), ALLOW(dup), ALLOW(dup3),
	ALLOW(epoll_ctl), ALLOW(access), ALLOW(faccessat), ALLOW(faccessat2),   /* tls-creds */
	ALLOW(uname),                   /* resolving a host name */
	END
};

static const struct rule harvester_rules[] = {
	ALLOW_ARG(ioctl, 1, KVM_RESET_DIRTY_RINGS, KVM_GET_DIRTY_LOG),
	END
};

static const struct rule throttle_rules[] = {
	END
};

static const struct rule digest_rules[] = {
	ALLOW(lseek),
	END
};

static const struct rule applier_rules[] = {
	ALLOW(pwrite64), ALLOW(pwritev),
	END
};

#define UFFD_IOCTLS UFFDIO_COPY, UFFDIO_ZEROPAGE, UFFDIO_WAKE

static const struct rule uffd_fault_rules[] = {
	ALLOW_ARG(ioctl, 1, UFFD_IOCTLS),
	ALLOW(poll), ALLOW(ppoll), ALLOW(pread64), ALLOW(sendto), ALLOW(sendmsg), FAVOUR,
	END
};

static const struct rule lazy_push_rules[] = {
	ALLOW_ARG(ioctl, 1, UFFD_IOCTLS),
	ALLOW(lseek), ALLOW(pread64), ALLOW(poll), ALLOW(ppoll),
	END
};

static const struct rule postcopy_rx_rules[] = {
	ALLOW_ARG(ioctl, 1, UFFD_IOCTLS, UFFDIO_UNREGISTER),
	ALLOW(accept4), ALLOW(poll), ALLOW(ppoll), ALLOW(sendto), ALLOW(recvfrom),
	ALLOW(sendmsg), ALLOW(recvmsg), ALLOW(setsockopt), ALLOW(shutdown), FAVOUR,
	END
};

static const struct rule postcopy_req_rules[] = {
	ALLOW(poll), ALLOW(ppoll), ALLOW(sendto), ALLOW(recvfrom), ALLOW(sendmsg), ALLOW(recvmsg),
	ALLOW(shutdown), FAVOUR,
	END
};

/* Building the VM a stream or snapshot describes: KVM's VM and vCPUs and
 * their state, guest RAM and its userfaultfd, the devices' eventfds, and
 * the start of every thread the destination runs (their own lockdown:
 * user, jail). The kinds it starts add their lists (kinds[] below). */
static const struct rule receive_rules[] = {
	ALLOW_ARG(ioctl, 1, KVM_GET_API_VERSION, KVM_CREATE_VM, KVM_GET_VCPU_MMAP_SIZE,
		  KVM_CREATE_VCPU, KVM_CREATE_IRQCHIP, KVM_ENABLE_CAP, KVM_GET_SUPPORTED_CPUID,
		  KVM_SET_CPUID2, KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR, KVM_IOEVENTFD,
		  KVM_IRQFD, KVM_SET_TSC_KHZ, KVM_SET_XSAVE, KVM_SET_XCRS, KVM_SET_DEBUGREGS,
		  KVM_SET_IRQCHIP, KVM_SET_LAPIC, KVM_SET_MSRS, KVM_SET_VCPU_EVENTS,
		  KVM_SET_MP_STATE, KVM_SET_REGS, KVM_SET_SREGS, KVM_GET_MSR_INDEX_LIST,
		  UFFDIO_API, UFFDIO_REGISTER, USERFAULTFD_IOC_NEW),
	ALLOW(memfd_create), ALLOW(userfaultfd), ALLOW(eventfd2), ALLOW(epoll_create1),
	ALLOW(signalfd4), ALLOW(fadvise64), ALLOW(prlimit64), ALLOW(statx), ALLOW(fstatfs),
	ALLOW(chroot), ALLOW(chdir), ALLOW(setgroups), ALLOW(setresgid), ALLOW(setresuid),
	ALLOW(umask), ALLOW(mkdir), ALLOW(chown), ALLOW(fchownat),     /* the control socket, */
	ALLOW(getdents64),                      /* and stale ones in its folder */
	END
};

/* The event loop, the control socket, the console, and what a command may
 * do afterwards: open disks and taps again (a failed handover), listen for
 * a postcopy recovery, start threads. */
static const struct rule main_rules[] = {
	ALLOW_ARG(ioctl, 1, KVM_CHECK_EXTENSION, KVM_IRQ_LINE, KVM_GET_CLOCK, KVM_SET_CLOCK,
		  KVM_SET_USER_MEMORY_REGION, KVM_GET_DIRTY_LOG, KVM_RESET_DIRTY_RINGS,
		  TUNSETIFF, TUNSETOFFLOAD, TUNSETVNETHDRSZ, SIOCGIFINDEX, TCGETS, TCSETS,
		  TCSETSW, TCSETSF, UFFDIO_UNREGISTER, UFFDIO_WAKE),
	ALLOW(epoll_wait), ALLOW(epoll_pwait), ALLOW(epoll_ctl), ALLOW(poll), ALLOW(ppoll),
	ALLOW(accept4), ALLOW(readv), ALLOW(recvfrom), ALLOW(recvmsg), ALLOW(sendto),
	ALLOW(sendmsg), ALLOW(getsockopt), ALLOW(setsockopt), ALLOW(getsockname),
	ALLOW(getpeername), ALLOW(shutdown), ALLOW(bind), ALLOW(listen), ALLOW(connect),
	ALLOW_ARG(socket, 0, AF_UNIX, AF_INET, AF_INET6),
	ALLOW_ARG(fcntl, 1, F_GETFL, F_SETFL, F_GETFD, F_SETFD, F_SETLEASE, F_GETLEASE,
		  F_SETSIG, F_OFD_SETLK, F_DUPFD_CLOEXEC),
	ALLOW(openat), ALLOW(newfstatat), ALLOW(fstat), ALLOW(lseek), ALLOW(pread64),
	ALLOW(pwrite64), ALLOW(fdatasync), ALLOW(fsync), ALLOW(ftruncate), ALLOW(fallocate),
	ALLOW(unlink), ALLOW(unlinkat), ALLOW(dup3), ALLOW(eventfd2), ALLOW(kill),
	END
};

struct kind {
	const char *name;
	const struct rule *rules;
	unsigned spawns;        /* kinds this one may start once filtered (bits) */
};

#define BIT(k) (1U << (k))

static const struct kind kinds[THREAD_KINDS] = {
	[THREAD_MAIN] = { "main", main_rules,
			  BIT(THREAD_MIGRATION) | BIT(THREAD_DIGEST) | BIT(THREAD_POSTCOPY_RX) },
	[THREAD_VCPU] = { "vcpu", vcpu_rules, 0 },
	[THREAD_MEMSLOTS] = { "memslots", memslots_rules, 0 },
	[THREAD_BLK_IO] = { "blk-io", blk_io_rules, 0 },
	[THREAD_MIGRATION] = { "migration", migration_rules,
			       BIT(THREAD_HARVESTER) | BIT(THREAD_THROTTLE) |
			       BIT(THREAD_POSTCOPY_REQ) },
	[THREAD_HARVESTER] = { "dirty-harvest", harvester_rules, 0 },
	[THREAD_THROTTLE] = { "throttle", throttle_rules, 0 },
	[THREAD_DIGEST] = { "ram-digest", digest_rules, 0 },
	[THREAD_APPLIER] = { "ram-applier", applier_rules, 0 },
	[THREAD_UFFD_FAULT] = { "uffd-fault", uffd_fault_rules, 0 },
	[THREAD_LAZY_PUSH] = { "lazy-push", lazy_push_rules, 0 },
	[THREAD_POSTCOPY_RX] = { "postcopy-rx", postcopy_rx_rules, 0 },
	[THREAD_POSTCOPY_REQ] = { "postcopy-req", postcopy_req_rules, 0 },
	[THREAD_RECEIVE] = { "receive", receive_rules,
			     BIT(THREAD_MAIN) | BIT(THREAD_VCPU) | BIT(THREAD_MEMSLOTS) |
			     BIT(THREAD_BLK_IO) | BIT(THREAD_APPLIER) | BIT(THREAD_UFFD_FAULT) |
			     BIT(THREAD_LAZY_PUSH) | BIT(THREAD_POSTCOPY_RX) },
};

/*
 * The module's state: written by seccomp_prepare() before any thread
 * exists, read-only afterwards. A SIGSYS handler has no other way to its
 * table, and threads without a VM pointer (blk-io, the applier) none to
 * the programs.
 */
static struct {
	bool on;
	bool log_only;          /* test builds: say it, fail the call, go on (finding lists) */
	int log_fd;             /* log-only: also appended here ($MINIVMM_SECCOMP_LOG), or -1 */
	struct sock_fprog prog[THREAD_KINDS];
	const char *sys_name[NAME_SLOTS];
} sc;

static __thread int my_kind = -1;      /* -1: not entered yet (a thread starting) */

const char *seccomp_kind_name(enum thread_kind kind)
{
	return kind < THREAD_KINDS ? kinds[kind].name : "?";
}

static int add_rule(scmp_filter_ctx ctx, const struct rule *r)
{
	if (r->arg < 0)
		return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 0);
	for (unsigned i = 0; i < r->nvals; i++) {
		int ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 1,
					   SCMP_CMP64((unsigned)r->arg, SCMP_CMP_MASKED_EQ, r->mask,
						      r->vals[i]));

		if (ret < 0)
			return ret;
	}
	return 0;
}

static int add_rules(scmp_filter_ctx ctx, const struct rule *rules)
{
	for (const struct rule *r = rules; r->nr != -1; r++)
		if (add_rule(ctx, r) < 0)
			return -1;
	return 0;
}

/* This kind's rules and those of every kind it may start, transitively. */
static unsigned closure(enum thread_kind k)
{
	unsigned set = BIT(k), prev = 0;

	while (set != prev) {
		prev = set;
		for (unsigned i = 0; i < THREAD_KINDS; i++)
			if (set & BIT(i))
				set |= kinds[i].spawns;
	}
	return set;
}

static int add_special(scmp_filter_ctx ctx, unsigned set, bool spawns)
{
	const struct rule *r;
	bool opens = false;
	int ret = 0;

	for (unsigned i = 0; i < THREAD_KINDS; i++)
		for (r = kinds[i].rules; (set & BIT(i)) && r->nr != -1; r++)
			opens |= r->nr == SCMP_SYS(openat);
	if (!opens)
		ret |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(openat), 0);
	/* Memory, never executable once we run. */
	ret |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
				SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	ret |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (spawns) {
		ret |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
		ret |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
					SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	}
	return ret ? -1 : 0;
}

/* libseccomp 2.5 exports BPF to a file descriptor only: a memfd, read back. */
static int export_prog(scmp_filter_ctx ctx, struct sock_fprog *prog)
{
	int fd = memfd_create("seccomp-bpf", MFD_CLOEXEC);
	off_t len;
	void *buf = NULL;

	if (fd < 0 || seccomp_export_bpf(ctx, fd) < 0)
		goto err;
	len = lseek(fd, 0, SEEK_END);
	if (len <= 0 || len % (off_t)sizeof(struct sock_filter) || !(buf = malloc((size_t)len)) ||
	    pread(fd, buf, (size_t)len, 0) != len)
		goto err;
	prog->filter = buf;
	prog->len = (unsigned short)(len / (off_t)sizeof(struct sock_filter));
	close(fd);
	return 0;
err:
	free(buf);
	if (fd >= 0)
		close(fd);
	return -1;
}

static int build(enum thread_kind k)
{
	unsigned set = closure(k);
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
	int ret = -1;

	if (!ctx)
		return -1;
	if (add_rules(ctx, base_rules) < 0)
		goto out;
	for (unsigned i = 0; i < THREAD_KINDS; i++)
		if ((set & BIT(i)) && add_rules(ctx, kinds[i].rules) < 0)
			goto out;
	if (add_special(ctx, set, set != BIT(k)) < 0)
		goto out;
	ret = export_prog(ctx, &sc.prog[k]);
out:
	seccomp_release(ctx);
	return ret;
}

/* Async-signal-safe: no stdio, no malloc; the names were looked up before. */
static void put_str(char *buf, size_t *n, size_t cap, const char *s)
{
	while (*s && *n + 1 < cap)
		buf[(*n)++] = *s++;
}

static void put_uint(char *buf, size_t *n, size_t cap, unsigned long v)
{
	char tmp[24];
	int i = 0;

	do {
		tmp[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i && *n + 1 < cap)
		buf[(*n)++] = tmp[--i];
}

static void on_sigsys(int sig, siginfo_t *si, void *uctx)
{
	char line[256], name[16] = "?";
	size_t n = 0;
	int nr = si->si_syscall;
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	prctl(PR_GET_NAME, name);
	put_str(line, &n, sizeof(line), "minivmm: seccomp: the ");
	put_str(line, &n, sizeof(line), my_kind < 0 ? "starting" : kinds[my_kind].name);
	put_str(line, &n, sizeof(line), " thread (");
	put_str(line, &n, sizeof(line), name);
	put_str(line, &n, sizeof(line), ") made the forbidden system call ");
	put_str(line, &n, sizeof(line), nr >= 0 && nr < NAME_SLOTS && sc.sys_name[nr] ?
		sc.sys_name[nr] : "?");
	put_str(line, &n, sizeof(line), " (");
	put_uint(line, &n, sizeof(line), (unsigned long)nr);
	put_str(line, &n, sizeof(line), sc.log_only ? "); log-only: ENOSYS\n" : "); stopping\n");
	if (write(STDERR_FILENO, line, n) < 0)
		n = 0;
	if (sc.log_only) {
		if (sc.log_fd >= 0 && write(sc.log_fd, line, n) < 0)
			n = 0;
		((ucontext_t *)uctx)->uc_mcontext.gregs[REG_RAX] = -ENOSYS;
		return;
	}
	sigaction(sig, &dfl, NULL);
	raise(sig);     /* delivered, with its default action, on return */
}

int seccomp_prepare(bool on)
{
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };

	sc.on = on;
	if (!on)
		return 0;
	sc.log_only = failpoint("seccomp-log-only");
	sc.log_fd = -1;
	if (sc.log_only && getenv("MINIVMM_SECCOMP_LOG"))
		sc.log_fd = open(getenv("MINIVMM_SECCOMP_LOG"), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
				 0600);
	for (int nr = 0; nr < NAME_SLOTS; nr++)
		sc.sys_name[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
	for (unsigned k = 0; k < THREAD_KINDS; k++)
		if (build((enum thread_kind)k) < 0) {
			pr_err("seccomp: cannot build the %s thread's filter", kinds[k].name);
			return -1;
		}
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0) {
		pr_err("seccomp: cannot set up: %s", strerror(errno));
		return -1;
	}
	return 0;
}

void seccomp_thread_enter(enum thread_kind kind)
{
	char fp[48];

	if (!sc.on)
		return;
#if defined(__SANITIZE_ADDRESS__)
	/* Sanitizer builds (tests only): LeakSanitizer's check at exit runs on
	 * the main thread and stops the others through a ptrace-ing helper
	 * cloned from it, which no filter of ours could let work; the main
	 * thread's list is exercised by every test of ./minivmm instead. */
	if (kind == THREAD_MAIN || kind == THREAD_RECEIVE)
		return;
#endif
	my_kind = (int)kind;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &sc.prog[kind]) == 0) {
		/* Tests: this kind's thread tries one call no list allows. */
		snprintf(fp, sizeof(fp), "seccomp-forbidden-%s", kinds[kind].name);
		if (failpoint(fp))
			syscall(SYS_personality, 0xffffffffUL);
		return;
	}
	pr_err("seccomp: cannot filter the %s thread: %s; stopping", kinds[kind].name,
	       strerror(errno));
	abort();
}
