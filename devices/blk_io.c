// SPDX-License-Identifier: MIT
/*
 * A few workers share a disk's queue, so that independent requests overlap
 * (a FLUSH in fdatasync, or a large read, no longer holds up the requests
 * behind it). Blocking I/O never runs on the event loop. A worker pops a
 * request under the transport lock, with the reads or writes right behind
 * it that continue it (served as one preadv/pwritev, as QEMU merges them:
 * buffered writes to one file serialise on its inode lock anyway, so for
 * sequential writes fewer, larger syscalls are what helps). It does the I/O
 * straight into guest memory without the lock, then pushes the results
 * under the lock and pops again; used entries may therefore leave in
 * another order than they came, which virtio allows.
 *
 * One idle worker at a time (the "poller") sleeps on the queue's notify
 * eventfd; the others sleep on a condition, so a kick wakes one thread,
 * not the pool. A worker that pops a slow request wakes an idle one to take
 * the next request or to watch for the next kick; a small read or write is
 * served faster than a thread wakes up, so it wakes nobody.
 *
 * A driver reset or a quiesce waits (on `io_idle`, under the transport
 * lock) until no request is in flight on any worker, so the device never
 * touches guest memory or the ring after either; reset also bumps a
 * generation so the results of the old incarnation are dropped rather than
 * pushed. A FLUSH waits until every write popped before it has completed.
 */
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devices/blk_io.h"
#include "vmm/vm.h"
#include "vmm/lockdown.h"

/* Data size from which a read or write is worth another worker's wakeup. */
#define BLK_IO_SLOW_BYTES       (64 * 1024)

static bool is_write(uint32_t type)
{
	return type == VIRTIO_BLK_T_OUT || type == VIRTIO_BLK_T_DISCARD ||
	       type == VIRTIO_BLK_T_WRITE_ZEROES;
}

/* Lock held, w's requests just popped: should an idle worker be woken?
 * Yes if they will take a while and there is more work queued, or nobody
 * is left to see the next kick. At queue depth 1 the driver waits for
 * them anyway, unless it is a FLUSH or DISCARD that may take milliseconds. */
static bool hand_off(const struct blk_io *io, const struct blk_io_worker *w)
{
	uint32_t t = w->reqs[0].hdr.type;
	bool rw = t == VIRTIO_BLK_T_IN || t == VIRTIO_BLK_T_OUT;
	uint64_t bytes = 0;

	if (!io->idle || t == VIRTIO_BLK_T_GET_ID)
		return false;
	for (unsigned i = 0; i < w->n; i++)
		bytes += w->reqs[i].elem.out_len + w->reqs[i].elem.in_len;
	if (rw && bytes < BLK_IO_SLOW_BYTES)
		return false;
	return vq_has_avail(&io->dev->vqs[0]) || (!io->poller && (io->inflight > 1 || !rw));
}

/* Lock held. Pop one request into r; false if there is none. */
static bool pop_one(struct blk_io *io, struct blk_io_req *r)
{
	struct virtio_device *d = io->dev;
	int ret = vq_pop(&d->vqs[0], &d->vm->mem, &r->elem);

	if (ret < 0)
		virtio_needs_reset(d, "malformed descriptor chain");
	if (ret <= 0)
		return false;
	/* Read here, under the lock, so that the type FLUSH ordering and
	 * merging rely on is the type the request is served as. */
	r->hdr.type = UINT32_MAX;
	if (r->elem.out_len >= sizeof(r->hdr))
		iov_to_buf(r->elem.out, r->elem.n_out, 0, &r->hdr, sizeof(r->hdr));
	return true;
}

/* Lock held. Take a request for w, and the reads or writes right behind it
 * that the device can serve with it as one transfer: sequential I/O then
 * costs one syscall (and one inode lock round) per run, not per request.
 * False if there is no request. */
static bool blk_io_pop(struct blk_io *io, struct blk_io_worker *w)
{
	struct virtio_device *d = io->dev;
	uint32_t t;

	if (!virtio_live(d) || !pop_one(io, &w->reqs[0]))
		return false;
	w->n = 1;
	t = w->reqs[0].hdr.type;
	while ((t == VIRTIO_BLK_T_IN || t == VIRTIO_BLK_T_OUT) && w->n < BLK_IO_BATCH &&
	       pop_one(io, &w->reqs[w->n])) {
		if (!io->merge(io->opaque, w, &w->reqs[w->n])) {
			vq_unpop(&d->vqs[0]);   /* the next pop takes it again */
			break;
		}
		w->n++;
	}
	w->writing = is_write(t);
	w->seq = io->next_seq++;
	w->gen = io->generation;
	w->busy = true;
	io->inflight++;
	if (hand_off(io, w))
		pthread_cond_signal(&io->work);
	return true;
}

/* Lock held. Pushed even when quiesced meanwhile (the requests were taken
 * before); dropped only if the driver reset the device. */
static void blk_io_complete(struct blk_io *io, struct blk_io_worker *w)
{
	struct virtio_device *d = io->dev;
	struct virtqueue *vq = &d->vqs[0];

	if (w->gen == io->generation) {
		for (unsigned i = 0; i < w->n; i++)
			vq_push(vq, &d->vm->mem, &w->reqs[i].elem, w->reqs[i].written);
		if (vq_should_notify(vq))
			virtio_signal_used(d);
	}
	w->busy = w->writing = false;
	io->inflight--;
	if (!io->inflight || io->flush_waiters)
		pthread_cond_broadcast(&io->io_idle);
}

/* Lock not held: sleep until the queue is kicked or the pool stops. */
static void blk_io_poll(struct blk_io *io)
{
	struct pollfd pfd[2] = {
		{ .fd = io->dev->notify_fd[0], .events = POLLIN },
		{ .fd = io->stop_fd, .events = POLLIN },
	};
	eventfd_t v;

	if (poll(pfd, 2, -1) > 0 && pfd[0].revents)
		eventfd_read(io->dev->notify_fd[0], &v);
}

static void *blk_io_worker(void *arg)
{
	struct blk_io_worker *w = arg;
	struct blk_io *io = w->io;
	pthread_mutex_t *lock = &io->dev->lock;
	/* A new worker looks at the ring only once woken, as a single
	 * thread would: after a state load the device is live before resume
	 * kicks it, and must not serve before. */
	bool look = false;

	pthread_setname_np(pthread_self(), "blk-io");
	lockdown_thread(THREAD_BLK_IO);
	pthread_mutex_lock(lock);
	for (;;) {
		if (w->busy)
			blk_io_complete(io, w);
		if (io->stopping)
			break;
		if (look && blk_io_pop(io, w)) {
			pthread_mutex_unlock(lock);
			io->serve(io->opaque, w);
			pthread_mutex_lock(lock);
			continue;
		}
		look = true;
		if (!io->poller) {
			/* The eventfd is read before the next pop, so a kick
			 * after this pop's empty look is never lost. */
			io->poller = true;
			pthread_mutex_unlock(lock);
			blk_io_poll(io);
			pthread_mutex_lock(lock);
			io->poller = false;
		} else {
			io->idle++;
			pthread_cond_wait(&io->work, lock);
			io->idle--;
		}
	}
	pthread_mutex_unlock(lock);
	return NULL;
}

/* Lock held: is a write popped before `seq` still in flight? */
static bool older_write(const struct blk_io *io, uint64_t seq)
{
	for (unsigned i = 0; i < io->nr_workers; i++) {
		const struct blk_io_worker *w = &io->workers[i];

		if (w->busy && w->writing && w->seq < seq)
			return true;
	}
	return false;
}

/* fdatasync only covers writes that have reached the file, and one popped
 * before this FLUSH may still be running on another worker. A FLUSH is
 * never merged, and writes wait for nothing: these waits cannot cycle. */
void blk_io_flush_wait(struct blk_io *io, const struct blk_io_worker *w)
{
	pthread_mutex_t *lock = &io->dev->lock;

	pthread_mutex_lock(lock);
	io->flush_waiters++;
	while (older_write(io, w->seq))
		pthread_cond_wait(&io->io_idle, lock);
	io->flush_waiters--;
	pthread_mutex_unlock(lock);
}

/* Lock held. Waiting releases it, so the workers can finish. */
static void blk_io_wait_idle(struct blk_io *io)
{
	while (io->inflight)
		pthread_cond_wait(&io->io_idle, &io->dev->lock);
}

void blk_io_reset(struct blk_io *io)
{
	io->generation++;
	blk_io_wait_idle(io);
}

void blk_io_quiesce(struct blk_io *io)
{
	pthread_mutex_lock(&io->dev->lock);
	blk_io_wait_idle(io);
	pthread_mutex_unlock(&io->dev->lock);
}

int blk_io_init(struct blk_io *io)
{
	pthread_cond_init(&io->work, NULL);
	pthread_cond_init(&io->io_idle, NULL);
	io->stop_fd = eventfd(0, EFD_CLOEXEC);
	return io->stop_fd < 0 ? -1 : 0;
}

int blk_io_start(struct blk_io *io, struct virtio_device *d, blk_io_serve_fn *serve,
		 blk_io_merge_fn *merge, void *opaque)
{
	io->dev = d;
	io->serve = serve;
	io->merge = merge;
	io->opaque = opaque;
	for (unsigned i = 0; i < BLK_IO_WORKERS; i++) {
		struct blk_io_worker *w = &io->workers[i];
		int err;

		w->io = io;
		err = pthread_create(&w->thread, NULL, blk_io_worker, w);
		if (err)
			return err;
		pthread_mutex_lock(&d->lock);
		io->nr_workers++;
		pthread_mutex_unlock(&d->lock);
	}
	return 0;
}

void blk_io_destroy(struct blk_io *io)
{
	if (io->nr_workers) {
		/* The poller sees stop_fd; the others wait on `work`. */
		pthread_mutex_lock(&io->dev->lock);
		io->stopping = true;
		pthread_cond_broadcast(&io->work);
		pthread_mutex_unlock(&io->dev->lock);
		eventfd_write(io->stop_fd, 1);
		for (unsigned i = 0; i < io->nr_workers; i++)
			pthread_join(io->workers[i].thread, NULL);
	}
	if (io->stop_fd >= 0)
		close(io->stop_fd);
	pthread_cond_destroy(&io->work);
	pthread_cond_destroy(&io->io_idle);
}
