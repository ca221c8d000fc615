/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueues (virtio 1.x, section 2.7): popping descriptor chains
 * (direct and indirect) into host iovecs, pushing used elements, and the
 * event-index notification rules. Every guest address and index is checked:
 * a malformed ring makes vq_pop() return -1 and the device must then set
 * DEVICE_NEEDS_RESET; nothing outside guest RAM is ever touched.
 *
 * Device writes into "in" buffers are recorded in the VMM dirty bitmap by
 * vq_push(), after the data is written, for exactly the bytes written.
 * A virtqueue is used by one thread at a time (its device's worker).
 */
#ifndef DEVICES_VIRTQUEUE_H
#define DEVICES_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/guest_mem.h"

#define VQ_MAX_SIZE     1024    /* QueueNumMax we offer */
#define VQ_MAX_SG       256     /* segments per chain; longer chains are malformed */

#define VRING_DESC_F_NEXT       1
#define VRING_DESC_F_WRITE      2
#define VRING_DESC_F_INDIRECT   4
#define VRING_AVAIL_F_NO_INTERRUPT 1

struct virtqueue {
	uint16_t size;          /* QueueNum, a power of two <= VQ_MAX_SIZE */
	bool ready;
	bool event_idx;         /* VIRTIO_RING_F_EVENT_IDX negotiated */
	bool indirect;          /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	/* Host views, set by vq_validate(). */
	uint8_t *desc, *avail, *used;
	uint16_t last_avail;    /* next avail ring slot to consume */
	uint16_t used_idx;      /* next used ring slot to fill */
	uint16_t signalled_used;
	bool signalled_valid;
};

struct vq_elem {
	uint16_t head;
	unsigned n_out, n_in;
	struct iovec out[VQ_MAX_SG];
	struct iovec in[VQ_MAX_SG];
	uint64_t in_gpa[VQ_MAX_SG];
	uint64_t out_len, in_len;
};

/* Check sizes, alignment and that the three rings lie in RAM; set host
 * views. 0 or -1 (then the queue must not be used). */
int vq_validate(struct virtqueue *vq, struct guest_mem *mem);
void vq_reset(struct virtqueue *vq);

/* 1: a chain was popped into elem; 0: ring empty; -1: malformed ring. */
int vq_pop(struct virtqueue *vq, struct guest_mem *mem, struct vq_elem *elem);
/* Return `elem` to the driver with `written` bytes in its "in" buffers. */
void vq_push(struct virtqueue *vq, struct guest_mem *mem, const struct vq_elem *elem,
	     uint32_t written);
/* After one or more pushes: must the driver be interrupted? Updates state. */
bool vq_should_notify(struct virtqueue *vq);
/* Put back the last popped element (e.g. no room in a backend yet). */
void vq_unpop(struct virtqueue *vq);
bool vq_has_avail(const struct virtqueue *vq);

/* Gather/scatter helpers over an elem's iovecs, skipping `skip` bytes first. */
size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len);
size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t skip, const void *buf,
		    size_t len);

#endif
