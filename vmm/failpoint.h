/* SPDX-License-Identifier: MIT */
/*
 * Failpoints: a test-only way to make a process fail at a named phase, so
 * failure tests are deterministic instead of racing a `kill` against a
 * timer. MINIVMM_FAILPOINTS="name[,name...]" in the environment arms them;
 * unset (always, in production) they cost one pointer test. Names used:
 *   dst-kill-bulk, dst-kill-rounds, dst-kill-final   the destination SIGKILLs
 *       itself at the first RAM record of that precopy pass (final: or at the
 *       state record, when the pause left no page to send)
 *   dst-kill-before-ready   ...after the end record checked out, before READY
 *   dst-error-before-ready  ...answers ERROR instead of READY
 *   dst-kill-after-go       ...after GO, before RUNNING (the source stays paused)
 *   src-save-stall          a file: save waits before its RAM pass until cancelled
 */
#ifndef VMM_FAILPOINT_H
#define VMM_FAILPOINT_H

#include <stdbool.h>

bool failpoint(const char *name);
/* SIGKILL this process if `name` is armed (no cleanup: that is the point). */
void failpoint_kill(const char *name);

#endif
