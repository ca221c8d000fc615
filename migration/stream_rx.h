/* SPDX-License-Identifier: MIT */
/*
 * Reading a live migration stream (docs/migration-format.md, "Live
 * migration stream") in the order the format fixes:
 *
 *   header (flags 0), machine, (ram | sync)*, [postcopy], state, end, [READY], go
 *
 * Anything out of order, malformed or inconsistent is refused with one
 * message. No KVM here: the RAM goes into whatever guest_mem it is given,
 * so tests/fuzz/fuzz_stream.c drives the same code as the destination.
 */
#ifndef MIGRATION_STREAM_RX_H
#define MIGRATION_STREAM_RX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "migration/ram_batch.h"
#include "migration/ram_pipe.h"
#include "migration/stream.h"

struct stream_rx {
	struct chan *c;
	bool socket;            /* peek at record headers (stall, EOF, exit status) */
	unsigned timeout_s;     /* socket: give up after this long without a byte */
	bool io_error;          /* the last failure was the connection's, not the data's */
	unsigned phases_seen;   /* bit per RAM_PHASE_* met so far (failpoints) */
	struct stream_header hdr;
	struct record machine;  /* kept: machine_load() points into it */
	struct record state;
	struct record postcopy; /* the switch to postcopy, if the source made it (checked) */
	struct stream_end end;
	struct ram_loader ram;
	struct ram_pipe pipe;   /* RAM batches are read into its buffers */
	/* The return path may have several writers (postcopy's fault thread). */
	pthread_mutex_t send_lock;
};

void stream_rx_init(struct stream_rx *rx, struct chan *c, bool socket, unsigned timeout_s);
void stream_rx_free(struct stream_rx *rx);

/* Header and machine record. 0 or -1 (printed). */
int stream_rx_open(struct stream_rx *rx);
/* RAM batches into `mem`, the state record, the end record; checks the
 * end's totals against what arrived. 0 or -1 (printed). */
int stream_rx_load(struct stream_rx *rx, struct guest_mem *mem);
/* Longest text a reply carries. */
#define REPLY_MAX_TEXT 1024

/* One reply record on the return path, in one send(). 0, or -1 with errno
 * (not printed). No-op without a return path (not a socket). */
int stream_rx_reply(struct stream_rx *rx, uint32_t code, const char *text);
/* One record of any type on the return path (page requests), whole, under
 * the same lock as replies. 0, or -1 with errno (not printed). */
int stream_rx_send(struct stream_rx *rx, uint32_t type, const void *payload, size_t len);
/* The go record, and nothing else. 0 or -1 (printed). */
int stream_rx_wait_go(struct stream_rx *rx);

#endif
