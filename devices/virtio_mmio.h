/* SPDX-License-Identifier: MIT */
/*
 * virtio-mmio transport, version 2 (virtio 1.x section 4.2). A device
 * supplies virtio_device_ops; the transport owns the registers, feature
 * negotiation, queue set-up and validation, notifications (ioeventfd on
 * QueueNotify, one eventfd per queue) and interrupts (irqfd, edge).
 *
 * Locking: `lock` guards registers and queues. vCPU threads take it for
 * register accesses; whoever processes a queue takes it around pop/push.
 * A device that is malformed-ring'd calls virtio_needs_reset() and stops.
 */
#ifndef DEVICES_VIRTIO_MMIO_H
#define DEVICES_VIRTIO_MMIO_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "devices/virtqueue.h"
#include "migration/state.h"

#define VIRTIO_MAX_QUEUES       8
#define VIRTIO_MMIO_SIZE        0x200   /* registers 0x000-0x0ff, config from 0x100 */

#define VIRTIO_F_RING_INDIRECT_DESC (1ULL << 28)
#define VIRTIO_F_RING_EVENT_IDX     (1ULL << 29)
#define VIRTIO_F_VERSION_1          (1ULL << 32)

#define VIRTIO_STATUS_ACKNOWLEDGE   1
#define VIRTIO_STATUS_DRIVER        2
#define VIRTIO_STATUS_DRIVER_OK     4
#define VIRTIO_STATUS_FEATURES_OK   8
#define VIRTIO_STATUS_NEEDS_RESET   0x40
#define VIRTIO_STATUS_FAILED        0x80

#define VIRTIO_ISR_USED             1
#define VIRTIO_ISR_CONFIG           2

struct vm;
struct virtio_device;

struct virtio_device_ops {
	const char *name;
	uint32_t device_id;
	uint16_t num_queues;
	uint16_t queue_max;             /* QueueNumMax, <= VQ_MAX_SIZE */
	uint64_t features;              /* device bits; the transport adds its own */
	uint32_t config_size;
	/* Config space: offset/len already bounds-checked against config_size. */
	void (*config_read)(struct virtio_device *d, uint32_t off, uint8_t *data, unsigned len);
	void (*config_write)(struct virtio_device *d, uint32_t off, const uint8_t *data,
			     unsigned len);
	/* Queue q was kicked and the device is live (DRIVER_OK). Called on the
	 * main loop without the lock held. NULL: the device polls notify_fd itself. */
	void (*queue_notify)(struct virtio_device *d, unsigned q);
	/* DRIVER_OK was set (lock held). */
	void (*activate)(struct virtio_device *d);
	/* The driver reset the device (lock held): when it returns the device
	 * must no longer touch guest memory or the queues. */
	void (*reset)(struct virtio_device *d);
	/* Free the device's own state (priv); vCPUs and workers are stopped. */
	void (*destroy)(struct virtio_device *d);
	/* Stop touching guest memory and finish in-flight requests (VM paused
	 * for a snapshot or migration); resume undoes it. Lock not held. */
	void (*quiesce)(struct virtio_device *d);
	void (*resume)(struct virtio_device *d);
	/* Make what the guest wrote durable on the backend (a disk's data on
	 * the image); quiesced. -1 (said) if it cannot be. */
	int (*flush)(struct virtio_device *d);
	/* Give up the host backend (tap, disk lock): the guest now runs on
	 * another host, which takes it over. The device stays quiesced. */
	void (*release)(struct virtio_device *d);
	/* Open the host backend now: an incoming migration after GO (the
	 * device was created without it), or a source taking back what it
	 * released when the destination will not run the guest. Main thread or
	 * the migration thread, quiesced; lock not held. No-op if attached. */
	int (*attach)(struct virtio_device *d);
	/* Device-specific state, inside the transport's node (lock held). */
	uint32_t state_version;
	void (*save)(struct virtio_device *d, struct state_writer *w);
	int (*load)(struct virtio_device *d, const struct state_reader *r);
};

struct virtio_device {
	struct vm *vm;
	const struct virtio_device_ops *ops;
	void *priv;
	unsigned index;                 /* 0.. : window and IRQ number */
	uint64_t base;
	uint32_t irq;
	pthread_mutex_t lock;
	uint32_t status;
	bool quiesced;                  /* paused for save: no queue processing */
	uint32_t dev_features_sel, drv_features_sel, queue_sel;
	uint32_t config_generation;
	uint64_t driver_features;
	_Atomic uint32_t isr;
	struct virtqueue vqs[VIRTIO_MAX_QUEUES];
	int notify_fd[VIRTIO_MAX_QUEUES];
	int irq_fd;
};

/* Create the transport for `ops` in the next free window, wired to KVM
 * (ioeventfd, irqfd) and the main loop. Must run before vCPUs start.
 * On failure ops->destroy has been called for priv. */
struct virtio_device *virtio_mmio_create(struct vm *vm, const struct virtio_device_ops *ops,
					 void *priv);
void virtio_mmio_destroy(struct virtio_device *d);

/* Interrupt the driver: used buffers on some queue. Any thread. */
void virtio_signal_used(struct virtio_device *d);
/* The ring or request was malformed: DEVICE_NEEDS_RESET + config interrupt. */
void virtio_needs_reset(struct virtio_device *d, const char *why);
bool virtio_live(const struct virtio_device *d);

/* Save the transport (registers, every queue) and the device in node
 * "virtioN". Quiesce first. */
void virtio_mmio_save(struct virtio_device *d, struct state_writer *w);
/* Load node "virtioN" of `parent` into a device created with the same
 * backends; checks device type, queue layout, ring addresses. */
int virtio_mmio_load(struct virtio_device *d, const struct state_reader *parent);
void virtio_mmio_quiesce(struct virtio_device *d);
int virtio_mmio_flush(struct virtio_device *d);
void virtio_mmio_release(struct virtio_device *d);
int virtio_mmio_attach(struct virtio_device *d);
void virtio_mmio_resume(struct virtio_device *d);

/* GSI of device window `index` (5, 6, 7, 9, 10, ... skipping 8). */
uint32_t virtio_mmio_irq(unsigned index);

#endif
