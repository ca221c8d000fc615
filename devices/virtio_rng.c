// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include "devices/virtio_mmio.h"
#include "devices/virtio_rng.h"
#include "vmm/vm.h"

#define VIRTIO_ID_RNG 4
/* Bound the work one kick can cause: a driver may post huge buffers. */
#define RNG_MAX_PER_BUFFER (64 * 1024)

static uint32_t rng_fill(struct vq_elem *e)
{
	uint32_t done = 0;

	for (unsigned i = 0; i < e->n_in && done < RNG_MAX_PER_BUFFER; i++) {
		size_t want = e->in[i].iov_len;
		ssize_t n;

		if (want > RNG_MAX_PER_BUFFER - done)
			want = RNG_MAX_PER_BUFFER - done;
		n = getrandom(e->in[i].iov_base, want, GRND_NONBLOCK);
		if (n <= 0)
			break;
		done += (uint32_t)n;
		if ((size_t)n < e->in[i].iov_len)
			break;
	}
	return done;
}

static void rng_notify(struct virtio_device *d, unsigned q)
{
	struct vq_elem *e = d->priv;
	struct virtqueue *vq = &d->vqs[q];
	bool pushed = false;
	int r;

	pthread_mutex_lock(&d->lock);
	while (virtio_live(d) && (r = vq_pop(vq, &d->vm->mem, e)) != 0) {
		if (r < 0) {
			virtio_needs_reset(d, "malformed descriptor chain");
			break;
		}
		vq_push(vq, &d->vm->mem, e, rng_fill(e));
		pushed = true;
	}
	if (pushed && vq_should_notify(vq))
		virtio_signal_used(d);
	pthread_mutex_unlock(&d->lock);
}

static void rng_destroy(struct virtio_device *d)
{
	free(d->priv);
}

static const struct virtio_device_ops rng_ops = {
	.destroy = rng_destroy,
	.name = "virtio-rng",
	.device_id = VIRTIO_ID_RNG,
	.num_queues = 1,
	.queue_max = 256,
	.queue_notify = rng_notify,
};

int virtio_rng_create(struct vm *vm)
{
	struct vq_elem *e = malloc(sizeof(*e));

	/* On failure the transport has already called rng_destroy. */
	if (!e || !virtio_mmio_create(vm, &rng_ops, e))
		return -1;
	return 0;
}
