/* SPDX-License-Identifier: MIT */
/*
 * Applying RAM batches on a thread of their own, so the destination
 * receives and checks batch n+1 while batch n goes into guest RAM (writing
 * fresh shmem pages costs as much as receiving them). Batches are applied
 * strictly in arrival order: a page resent later wins.
 *
 * The reader owns the protocol: it asks for a free buffer, reads a record
 * into it, checks it (ram_batch_check) and submits it. The applier touches
 * only guest RAM and the loader's bitmap and counters, which the reader may
 * look at again after ram_pipe_finish().
 */
#ifndef MIGRATION_RAM_PIPE_H
#define MIGRATION_RAM_PIPE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration/ram_batch.h"

#define RAM_PIPE_BUFS 4         /* one being read, two queued, one being applied */

struct ram_pipe {
	struct ram_loader *l;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	void *buf[RAM_PIPE_BUFS];
	size_t cap;
	unsigned submitted;     /* batches handed over; buffer = count % RAM_PIPE_BUFS */
	unsigned applied;       /* batches done */
	bool stop;
	bool failed;            /* the applier stopped: l->error says why */
	bool reported;          /* ... and that was printed */
	bool running;
};

/* Buffers of `cap` bytes and the applier thread. 0, or -1 (printed). */
int ram_pipe_start(struct ram_pipe *p, struct ram_loader *l, size_t cap);
/* The buffer to read the next batch into, once the applier has freed it;
 * NULL if applying failed (printed). */
void *ram_pipe_buffer(struct ram_pipe *p);
/* Hand over the buffer from ram_pipe_buffer(), now holding a checked batch. */
void ram_pipe_submit(struct ram_pipe *p);
/* Wait until every submitted batch is applied. 0, or -1 if one failed (printed). */
int ram_pipe_drain(struct ram_pipe *p);
/* Wait for every submitted batch, stop the thread, free the buffers. 0, or
 * -1 if a batch could not be applied (printed). Safe to call twice. */
int ram_pipe_finish(struct ram_pipe *p);

#endif
