/* SPDX-License-Identifier: MIT */
/*
 * `minivmm --incoming tcp:[HOST]:PORT` / `unix:PATH`: the destination of a
 * live migration. Listens, takes one connection, builds the machine the
 * stream describes, loads RAM and state, answers READY, and lets the guest
 * run only after the source's GO (docs/migration-format.md).
 */
#ifndef MIGRATION_INCOMING_STREAM_H
#define MIGRATION_INCOMING_STREAM_H

#include "vmm/vm.h"

#define INCOMING_TIMEOUT_ENV     "MINIVMM_INCOMING_TIMEOUT"
#define INCOMING_TIMEOUT_DEFAULT 60     /* seconds without a byte from the source */

/* Receive the VM into `vm`. EXIT_OK when it may run (GO arrived, RUNNING
 * sent); otherwise the exit status, the error printed once and sent to the
 * source as an ERROR reply, and the guest never ran. */
int incoming_stream(struct vm *vm, const struct vm_config *cmdline, const char *uri);

#endif
