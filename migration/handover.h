/* SPDX-License-Identifier: MIT */
/*
 * The handover of a live migration (migration/handover.c): GO and what the
 * source does with each answer. Touches the VM only through its backends
 * (release, attach) and its freeze (vmstate_thaw).
 */
#ifndef MIGRATION_HANDOVER_H
#define MIGRATION_HANDOVER_H

#include <stddef.h>
#include <stdint.h>

#include "migration/migration.h"
#include "migration/stream.h"

struct vm;

/* Migration thread. READY came and the VM is frozen: release the backends,
 * send GO, act on the answer. 0: the destination runs the guest. -1: it
 * does not; either the guest runs here again (already thawed, or
 * m->take_back: the main thread must call handover_take_back()), or the VM
 * is stranded (m->stranded), paused. m->error says which and why. */
int handover(struct migration *m, struct chan *out, struct chan *in);

/* Main thread: take the disks and taps back (retrying briefly while a peer
 * lets go) and thaw the VM. -1 if a backend cannot be had (said on
 * stderr); the VM stays frozen. */
int handover_take_back(struct vm *vm);

/* One reply record from the return path: its code and message, past a
 * RECEIVING. -1 on EOF, I/O error, stall or a malformed record (said on
 * stderr). */
int handover_read_reply(struct chan *in, uint32_t *code, char *msg, size_t msglen);

/* Migration thread, before a postcopy switch freezes the VM: wait up to
 * timeout_ms for the destination's RECEIVING (its VM exists), so that its
 * set-up is not paid for as downtime. 0 once it came; -1 on an error reply,
 * a break or the timeout (said on stderr; the VM still runs here). */
int handover_wait_receiving(struct chan *in, unsigned timeout_ms);

#endif
