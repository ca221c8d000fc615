/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk and virtio-net for the fuzz targets (fuzz_virtqueue.c,
 * fuzz_state.c), built from their own sources, included here so that the
 * request handlers, the worker's pop/complete steps and the ops tables,
 * all static, can be called directly, but without the host resources
 * their create functions take: the disk image is any fd the target passes
 * (a memfd), the "tap" any datagram socket (or -1: no backend), and no I/O
 * worker thread is started (the target serves the queue itself, one
 * request run at a time, as a worker would). Include it from exactly one
 * file of a fuzz binary, and link neither devices/virtio_blk.c,
 * devices/blk_io.c nor devices/virtio_net.c with it.
 */
#ifndef TESTS_FUZZ_FUZZ_DEVICES_H
#define TESTS_FUZZ_FUZZ_DEVICES_H

#include "devices/blk_io.c"
#include "devices/virtio_blk.c"
#include "devices/virtio_net.c"

/* A virtio-blk device on image `fd` (`size` bytes, a multiple of 512). */
static inline struct blk *fuzz_blk_create(struct vm *vm, int fd, uint64_t size, const char *serial)
{
	struct blk *b = calloc(1, sizeof(*b));

	if (!b || blk_io_init(&b->io) < 0)
		abort();
	b->fd = fd;
	b->size = size;
	snprintf(b->path, sizeof(b->path), "fuzz-disk");
	b->cfg.path = b->path;
	snprintf(b->serial, sizeof(b->serial), "%s", serial);
	blk_fill_config(b);
	b->ops = blk_ops;
	b->dev = virtio_mmio_create(vm, &b->ops, b);
	if (!b->dev)
		abort();
	/* What blk_io_start() sets, without its threads. */
	b->io.dev = b->dev;
	b->io.serve = blk_serve;
	b->io.merge = blk_merge;
	b->io.opaque = b;
	for (unsigned i = 0; i < BLK_IO_WORKERS; i++)
		b->io.workers[i].io = &b->io;
	/* Worker 0 (fuzz_blk_serve) is counted, so the FLUSH ordering looks
	 * at it; the others are "idle", so hand_off() looks at each request
	 * (signalling a condition nobody waits on wakes nobody). Never
	 * destroyed: blk_io_destroy() would join a thread that never was. */
	b->io.nr_workers = 1;
	b->io.idle = BLK_IO_WORKERS - 1;
	return b;
}

/* Serve the queue as one worker would (blk_io.c's loop, on this thread):
 * pop a request run, serve it without the lock, push its results. At most
 * `max_runs` runs: a guest whose requests rewrite its own ring can keep a
 * real worker busy for as long as it likes, which costs only its own disk. */
static inline void fuzz_blk_serve(struct blk *b, unsigned max_runs)
{
	struct blk_io *io = &b->io;
	struct blk_io_worker *w = &io->workers[0];

	pthread_mutex_lock(&b->dev->lock);
	for (unsigned i = 0; i < max_runs && blk_io_pop(io, w); i++) {
		pthread_mutex_unlock(&b->dev->lock);
		io->serve(io->opaque, w);
		pthread_mutex_lock(&b->dev->lock);
		blk_io_complete(io, w);
	}
	pthread_mutex_unlock(&b->dev->lock);
}

/* A virtio-net device whose tap is `tap_fd` (a datagram socket: one
 * datagram a frame), registered with the loop as the real one is. */
static inline struct net *fuzz_net_create(struct vm *vm, int tap_fd)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	struct net *n = calloc(1, sizeof(*n));

	if (!n)
		abort();
	n->tap_fd = tap_fd;
	snprintf(n->tap_name, sizeof(n->tap_name), "fuzz0");
	n->cfg.tap = n->tap_name;
	n->cfg.mac_set = true;
	memcpy(n->cfg.mac, mac, sizeof(mac));
	net_fill_config(n);
	n->dev = virtio_mmio_create(vm, &net_ops, n);
	if (!n->dev || (tap_fd >= 0 && event_loop_add(&vm->loop, tap_fd, 0, net_on_tap, n) < 0))
		abort();
	return n;
}

#endif
