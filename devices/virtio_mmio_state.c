// SPDX-License-Identifier: MIT
/*
 * Save and load of the virtio-mmio transport: every register a driver can
 * observe and, per queue, its layout and the device's ring indices. The
 * device must be quiesced, so no request is half-done: last_avail counts
 * exactly the requests whose results are already in the used ring.
 */
#include <stdio.h>
#include <sys/eventfd.h>

#include "devices/virtio_mmio.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define VIRTIO_STATE_VERSION 1
#define VQ_STATE_VERSION     1

static void vq_save(const struct virtqueue *vq, unsigned q, struct state_writer *w)
{
	char name[16];

	snprintf(name, sizeof(name), "queue%u", q);
	state_node_begin(w, name, VQ_STATE_VERSION);
	state_put_u32(w, "size", vq->size);
	state_put_u32(w, "ready", vq->ready);
	state_put_u64(w, "desc", vq->desc_gpa);
	state_put_u64(w, "avail", vq->avail_gpa);
	state_put_u64(w, "used", vq->used_gpa);
	state_put_u32(w, "last-avail", vq->last_avail);
	state_put_u32(w, "used-idx", vq->used_idx);
	state_put_u32(w, "signalled-used", vq->signalled_used);
	state_put_u32(w, "signalled-valid", vq->signalled_valid);
	state_node_end(w);
}

void virtio_mmio_save(struct virtio_device *d, struct state_writer *w)
{
	char name[16];

	snprintf(name, sizeof(name), "virtio%u", d->index);
	pthread_mutex_lock(&d->lock);
	state_node_begin(w, name, VIRTIO_STATE_VERSION);
	state_put_str(w, "type", d->ops->name);
	state_put_u32(w, "device-id", d->ops->device_id);
	state_put_u32(w, "status", d->status);
	state_put_u64(w, "driver-features", d->driver_features);
	state_put_u32(w, "device-features-sel", d->dev_features_sel);
	state_put_u32(w, "driver-features-sel", d->drv_features_sel);
	state_put_u32(w, "queue-sel", d->queue_sel);
	state_put_u32(w, "config-generation", d->config_generation);
	state_put_u32(w, "isr", atomic_load(&d->isr));
	for (unsigned q = 0; q < d->ops->num_queues; q++)
		vq_save(&d->vqs[q], q, w);
	if (d->ops->save) {
		state_node_begin(w, "device", d->ops->state_version);
		d->ops->save(d, w);
		state_node_end(w);
	}
	state_node_end(w);
	pthread_mutex_unlock(&d->lock);
}

static int get_u16(const struct state_reader *r, const char *prop, uint16_t *v)
{
	uint32_t x;

	if (state_get_u32(r, prop, &x) < 0)
		return -1;
	if (x > 0xffff) {
		pr_err("device state: %s/%s = %u is out of range", r->path, prop, x);
		return -1;
	}
	*v = (uint16_t)x;
	return 0;
}

static int vq_load(struct virtio_device *d, unsigned q, const struct state_reader *parent)
{
	struct virtqueue *vq = &d->vqs[q];
	struct state_reader r;
	uint32_t ready, valid;
	char name[16];

	snprintf(name, sizeof(name), "queue%u", q);
	vq_reset(vq);
	if (state_node_open(parent, name, &r) < 0 || state_check_version(&r, VQ_STATE_VERSION) < 0 ||
	    get_u16(&r, "size", &vq->size) < 0 || state_get_u32(&r, "ready", &ready) < 0 ||
	    state_get_u64(&r, "desc", &vq->desc_gpa) < 0 ||
	    state_get_u64(&r, "avail", &vq->avail_gpa) < 0 ||
	    state_get_u64(&r, "used", &vq->used_gpa) < 0 ||
	    get_u16(&r, "last-avail", &vq->last_avail) < 0 ||
	    get_u16(&r, "used-idx", &vq->used_idx) < 0 ||
	    get_u16(&r, "signalled-used", &vq->signalled_used) < 0 ||
	    state_get_u32(&r, "signalled-valid", &valid) < 0)
		return -1;
	vq->signalled_valid = valid;
	if (vq->size > d->ops->queue_max) {
		pr_err("device state: %s: queue size %u exceeds %u", r.path, vq->size,
		       d->ops->queue_max);
		return -1;
	}
	if (!ready)
		return 0;
	vq->event_idx = d->driver_features & VIRTIO_F_RING_EVENT_IDX;
	vq->indirect = d->driver_features & VIRTIO_F_RING_INDIRECT_DESC;
	/* The same checks a driver's QueueReady write gets. */
	if (vq_validate(vq, &d->vm->mem) < 0) {
		pr_err("device state: %s: rings outside guest RAM or malformed", r.path);
		return -1;
	}
	vq->ready = true;
	return 0;
}

static int transport_load(struct virtio_device *d, const struct state_reader *r)
{
	uint32_t id, isr;

	if (state_check_version(r, VIRTIO_STATE_VERSION) < 0 ||
	    state_get_u32(r, "device-id", &id) < 0)
		return -1;
	if (id != d->ops->device_id) {
		pr_err("device state: %s is device type %u, this machine has %s there",
		       r->path, id, d->ops->name);
		return -1;
	}
	if (state_get_u32(r, "status", &d->status) < 0 ||
	    state_get_u64(r, "driver-features", &d->driver_features) < 0 ||
	    state_get_u32(r, "device-features-sel", &d->dev_features_sel) < 0 ||
	    state_get_u32(r, "driver-features-sel", &d->drv_features_sel) < 0 ||
	    state_get_u32(r, "queue-sel", &d->queue_sel) < 0 ||
	    state_get_u32(r, "config-generation", &d->config_generation) < 0 ||
	    state_get_u32(r, "isr", &isr) < 0)
		return -1;
	atomic_store(&d->isr, isr);
	return 0;
}

int virtio_mmio_load(struct virtio_device *d, const struct state_reader *parent)
{
	struct state_reader r, dev;
	char name[16];
	int ret = -1;

	snprintf(name, sizeof(name), "virtio%u", d->index);
	if (state_node_open(parent, name, &r) < 0)
		return -1;
	pthread_mutex_lock(&d->lock);
	if (transport_load(d, &r) < 0)
		goto out;
	for (unsigned q = 0; q < d->ops->num_queues; q++)
		if (vq_load(d, q, &r) < 0)
			goto out;
	if (d->ops->load) {
		if (state_node_open(&r, "device", &dev) < 0 ||
		    state_check_version(&dev, d->ops->state_version) < 0 ||
		    d->ops->load(d, &dev) < 0)
			goto out;
	}
	ret = 0;
out:
	pthread_mutex_unlock(&d->lock);
	return ret;
}

void virtio_mmio_quiesce(struct virtio_device *d)
{
	pthread_mutex_lock(&d->lock);
	d->quiesced = true;     /* virtio_live() is false from here on */
	pthread_mutex_unlock(&d->lock);
	if (d->ops->quiesce)
		d->ops->quiesce(d);
}

void virtio_mmio_resume(struct virtio_device *d)
{
	pthread_mutex_lock(&d->lock);
	d->quiesced = false;
	pthread_mutex_unlock(&d->lock);
	if (d->ops->resume)
		d->ops->resume(d);
	/* Kicks that arrived while quiesced were dropped: look again. */
	for (unsigned q = 0; q < d->ops->num_queues; q++)
		eventfd_write(d->notify_fd[q], 1);
}

int virtio_mmio_flush(struct virtio_device *d)
{
	return d->ops->flush ? d->ops->flush(d) : 0;
}

void virtio_mmio_release(struct virtio_device *d)
{
	if (d->ops->release)
		d->ops->release(d);
}

int virtio_mmio_attach(struct virtio_device *d)
{
	return d->ops->attach ? d->ops->attach(d) : 0;
}
