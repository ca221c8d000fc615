/* SPDX-License-Identifier: MIT */
/*
 * The destination side: `minivmm --incoming URI`. Reads the stream (or
 * snapshot file), builds the machine it describes, loads RAM and state,
 * and runs the guest only when everything arrived whole and checked out.
 */
#ifndef MIGRATION_INCOMING_H
#define MIGRATION_INCOMING_H

#include "vmm/vm.h"

/* Returns the process exit status; `vm` is the process's one VM. */
int incoming_run(struct vm *vm, const struct vm_config *cmdline);

/* Enter the receive phase (vmm/lockdown.h) keeping the capabilities that
 * opening the command line's backends after GO takes, or, with
 * --accept-backends (paths the stream names), the two that any might;
 * and for a restore (snapshot: its path, else NULL) what reading it takes. */
void incoming_lockdown(const struct vm_config *cmdline, const char *snapshot);

#endif
