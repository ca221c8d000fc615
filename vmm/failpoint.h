/* SPDX-License-Identifier: MIT */
/*
 * Failpoints: a test-only way to make a process fail at a named phase, so
 * failure tests are deterministic instead of racing a `kill` against a
 * timer. Only test builds have them (build/minivmm-test, build/minivmm-san:
 * compiled with -DMINIVMM_FAILPOINTS); in ./minivmm they are constant false.
 * MINIVMM_FAILPOINTS="name[,name...]" in the environment arms them. Names:
 *   dst-kill-bulk, dst-kill-rounds, dst-kill-final   the destination SIGKILLs
 *       itself at the first RAM record of that precopy pass (final: or at the
 *       state record, when the pause left no page to send)
 *   dst-kill-before-ready   ...after the end record checked out, before READY
 *   dst-error-before-ready  ...answers ERROR instead of READY
 *   dst-kill-after-ready    ...right after READY, before GO
 *   dst-kill-after-go       ...after GO, before RUNNING (the source stays paused)
 *   dst-attach-fail-after-go  the destination cannot take the backends after
 *       GO and answers ERROR (the source takes them back and resumes)
 *   src-wait-peer-before-go   the source waits (up to 10 s) for the destination
 *       to close the connection before it sends GO
 *   src-kill-before-go      the source SIGKILLs itself after releasing its
 *       backends, before GO (the destination must not run the guest)
 *   src-go-write-fail       writing GO fails (the source resumes)
 *   src-save-stall          a file: save waits before its RAM pass until cancelled
 *   lazy-push-after-faults  a --lazy=uffd restore starts its push only after
 *       the guest has taken 64 faults
 *   seccomp-forbidden-KIND  a thread of that kind (vmm/seccomp.c: main, vcpu,
 *       blk-io, migration...) makes one forbidden syscall once filtered
 *   seccomp-log-only        a forbidden syscall is logged and fails with ENOSYS
 *       instead of killing the process (to find what a list lacks)
 */
#ifndef VMM_FAILPOINT_H
#define VMM_FAILPOINT_H

#include <stdbool.h>

bool failpoint(const char *name);
/* SIGKILL this process if `name` is armed (no cleanup: that is the point). */
void failpoint_kill(const char *name);

#endif
