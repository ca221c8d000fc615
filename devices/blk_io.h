/* SPDX-License-Identifier: MIT */
/*
 * The virtio-blk I/O workers: a few threads per disk serve its one queue so
 * that independent requests overlap. See blk_io.c for how they share it.
 */
#ifndef DEVICES_BLK_IO_H
#define DEVICES_BLK_IO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/virtio_mmio.h"

#define BLK_IO_WORKERS          3
#define BLK_IO_BATCH            16      /* requests merged into one transfer */

/* Request types (virtio 1.1, 5.2.6); the pool needs them for FLUSH ordering. */
#define VIRTIO_BLK_T_IN         0
#define VIRTIO_BLK_T_OUT        1
#define VIRTIO_BLK_T_FLUSH      4
#define VIRTIO_BLK_T_GET_ID     8
#define VIRTIO_BLK_T_DISCARD    11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

struct blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct blk_io;

struct blk_io_req {
	struct vq_elem elem;
	struct blk_req_hdr hdr;         /* read once, when popped; type ~0 if short */
	uint32_t written;               /* set by serve: bytes into "in", status too */
};

/* A worker and the requests in its hands: one request, or a run of reads
 * or writes the device agreed to merge. All but the requests' buffers are
 * guarded by the transport lock. */
struct blk_io_worker {
	struct blk_io *io;
	pthread_t thread;
	unsigned n;                     /* requests in hand */
	uint64_t seq;                   /* pop order of the first, for FLUSH */
	uint64_t gen;                   /* generation they were popped in */
	bool busy;                      /* holds popped requests */
	bool writing;                   /* ...that modify the image */
	struct blk_io_req reqs[BLK_IO_BATCH];
};

/* Serve w->reqs[0..n) (lock not held), setting each one's `written`. */
typedef void blk_io_serve_fn(void *opaque, struct blk_io_worker *w);
/* May `next` join the run w->reqs[0..n) as one transfer? Lock held. */
typedef bool blk_io_merge_fn(void *opaque, const struct blk_io_worker *w,
			     const struct blk_io_req *next);

struct blk_io {
	struct virtio_device *dev;
	blk_io_serve_fn *serve;
	blk_io_merge_fn *merge;
	void *opaque;
	int stop_fd;
	/* Guarded by the transport lock. */
	pthread_cond_t work;            /* idle workers other than the poller */
	pthread_cond_t io_idle;         /* completions: reset, quiesce, FLUSH */
	unsigned nr_workers;            /* started */
	unsigned inflight;              /* workers holding requests */
	unsigned idle;                  /* waiting on `work` */
	unsigned flush_waiters;
	bool poller;                    /* a worker sleeps on the notify eventfd */
	bool stopping;
	uint64_t generation;
	uint64_t next_seq;
	struct blk_io_worker workers[BLK_IO_WORKERS];
};

/* Before anything can fail: blk_io_destroy() is then always safe. */
int blk_io_init(struct blk_io *io);
/* Start the workers on queue 0 of `d`. 0, or pthread_create()'s error (then
 * blk_io_destroy() joins the workers already started). */
int blk_io_start(struct blk_io *io, struct virtio_device *d, blk_io_serve_fn *serve,
		 blk_io_merge_fn *merge, void *opaque);
void blk_io_destroy(struct blk_io *io);
/* Driver reset (lock held): drop results in flight and wait for them. */
void blk_io_reset(struct blk_io *io);
/* Quiesce (lock not held): wait until no request is in flight. */
void blk_io_quiesce(struct blk_io *io);
/* For a FLUSH being served by w: wait until every write popped before it
 * is done. */
void blk_io_flush_wait(struct blk_io *io, const struct blk_io_worker *w);

#endif
