/* SPDX-License-Identifier: MIT */
/*
 * A device-level test harness: a struct vm with guest RAM but no KVM, and a
 * little virtio driver that writes the MMIO registers exactly as the spec
 * says and lays out split virtqueues in guest memory. Included by the
 * virtio unit tests only.
 */
#ifndef TESTS_VIRTIO_HARNESS_H
#define TESTS_VIRTIO_HARNESS_H

#include <check.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>

#include "devices/virtio_mmio.h"
#include "vmm/vm.h"

#define H_RAM       (16ULL << 20)
#define H_DESC      0x10000ULL
#define H_AVAIL     0x20000ULL
#define H_USED      0x30000ULL
#define H_DATA      0x100000ULL

#define R_STATUS 0x070
#define R_NOTIFY 0x050

struct harness {
	struct vm vm;
	struct virtio_device *d;
	uint16_t qsize;
	uint16_t next_desc;
	uint16_t avail_idx;
};

struct hbuf {
	uint64_t gpa;
	uint32_t len;
	bool write;             /* device writes it */
};

static inline void h_init(struct harness *h)
{
	memset(h, 0, sizeof(*h));
	h->vm.vm_fd = h->vm.kvm_fd = -1;
	h->vm.pio.name = "pio";
	h->vm.mmio.name = "mmio";
	ck_assert_int_eq(guest_mem_init(&h->vm.mem, H_RAM), 0);
	ck_assert_int_eq(event_loop_init(&h->vm.loop), 0);
}

static inline void h_fini(struct harness *h)
{
	for (unsigned i = 0; i < h->vm.nr_virtio; i++)
		virtio_mmio_destroy(h->vm.virtio[i]);
	event_loop_destroy(&h->vm.loop);
	guest_mem_destroy(&h->vm.mem);
}

static inline uint32_t h_rd(struct harness *h, uint32_t off)
{
	uint32_t v = 0;

	io_bus_access(&h->vm.mmio, h->d->base + off, (uint8_t *)&v, 4, false);
	return v;
}

static inline void h_wr(struct harness *h, uint32_t off, uint32_t v)
{
	io_bus_access(&h->vm.mmio, h->d->base + off, (uint8_t *)&v, 4, true);
}

static inline void *h_ptr(struct harness *h, uint64_t gpa, uint64_t len)
{
	void *p = guest_mem_ptr(&h->vm.mem, gpa, len);

	ck_assert_ptr_nonnull(p);
	return p;
}

/* Negotiate `features` (VERSION_1 added) and set up queue q at the fixed
 * ring addresses with `qsize` entries. Returns the status read back. */
static inline uint32_t h_setup_queue(struct harness *h, unsigned q, uint16_t qsize,
				     uint64_t features)
{
	features |= VIRTIO_F_VERSION_1;
	h_wr(h, R_STATUS, 0);
	h_wr(h, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	h_wr(h, 0x024, 0);
	h_wr(h, 0x020, (uint32_t)features);
	h_wr(h, 0x024, 1);
	h_wr(h, 0x020, (uint32_t)(features >> 32));
	h_wr(h, R_STATUS, h_rd(h, R_STATUS) | VIRTIO_STATUS_FEATURES_OK);
	if (!(h_rd(h, R_STATUS) & VIRTIO_STATUS_FEATURES_OK))
		return h_rd(h, R_STATUS);
	memset(h_ptr(h, H_DESC, 0x30000), 0, 0x30000);
	h_wr(h, 0x030, q);
	h_wr(h, 0x038, qsize);
	h_wr(h, 0x080, (uint32_t)H_DESC);
	h_wr(h, 0x084, 0);
	h_wr(h, 0x090, (uint32_t)H_AVAIL);
	h_wr(h, 0x094, 0);
	h_wr(h, 0x0a0, (uint32_t)H_USED);
	h_wr(h, 0x0a4, 0);
	h_wr(h, 0x044, 1);
	h_wr(h, R_STATUS, h_rd(h, R_STATUS) | VIRTIO_STATUS_DRIVER_OK);
	h->qsize = qsize;
	h->next_desc = 0;
	h->avail_idx = 0;
	return h_rd(h, R_STATUS);
}

static inline void h_desc(struct harness *h, uint16_t i, uint64_t addr, uint32_t len,
			  uint16_t flags, uint16_t next)
{
	uint8_t *d = h_ptr(h, H_DESC + 16ULL * i, 16);

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static inline void h_publish(struct harness *h, uint16_t head)
{
	uint16_t *ring = h_ptr(h, H_AVAIL + 4 + 2ULL * (h->avail_idx % h->qsize), 2);
	uint16_t *idx = h_ptr(h, H_AVAIL + 2, 2);

	*ring = head;
	__atomic_store_n(idx, ++h->avail_idx, __ATOMIC_RELEASE);
}

/* Post a chain of buffers; returns its head. */
static inline uint16_t h_post(struct harness *h, const struct hbuf *b, unsigned n)
{
	uint16_t head = h->next_desc;

	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((head + i) % h->qsize);
		uint16_t flags = (b[i].write ? VRING_DESC_F_WRITE : 0) |
				 (i + 1 < n ? VRING_DESC_F_NEXT : 0);

		h_desc(h, idx, b[i].gpa, b[i].len, flags, (uint16_t)((idx + 1) % h->qsize));
	}
	h->next_desc = (uint16_t)((head + n) % h->qsize);
	h_publish(h, head);
	return head;
}

static inline uint16_t h_used_idx(struct harness *h)
{
	return __atomic_load_n((uint16_t *)h_ptr(h, H_USED + 2, 2), __ATOMIC_ACQUIRE);
}

static inline void h_used_elem(struct harness *h, uint16_t slot, uint32_t *id, uint32_t *len)
{
	uint8_t *e = h_ptr(h, H_USED + 4 + 8ULL * (slot % h->qsize), 8);

	memcpy(id, e, 4);
	memcpy(len, e + 4, 4);
}

/* Kick queue q and wait (bounded) until the used index reaches `want`:
 * runs the event loop for main-loop devices, waits for worker threads. */
static inline bool h_kick_wait(struct harness *h, unsigned q, uint16_t want)
{
	h_wr(h, R_NOTIFY, q);
	for (int i = 0; i < 200 && h_used_idx(h) != want; i++) {
		struct pollfd p = { .fd = h->d->irq_fd, .events = POLLIN };

		uint64_t v;

		event_loop_run_once(&h->vm.loop, 0);
		/* Wait for the device's interrupt (or 10 ms), then consume it. */
		if (poll(&p, 1, 10) > 0)
			eventfd_read(h->d->irq_fd, &v);
	}
	return h_used_idx(h) == want;
}

static inline bool h_needs_reset(struct harness *h)
{
	return h_rd(h, R_STATUS) & VIRTIO_STATUS_NEEDS_RESET;
}



/* Kick and wait (bounded) for DEVICE_NEEDS_RESET; the VMM must go on. */
static inline bool h_kick_expect_reset(struct harness *h, unsigned q)
{
	h_wr(h, R_NOTIFY, q);
	for (int i = 0; i < 200 && !h_needs_reset(h); i++) {
		struct pollfd p = { .fd = h->d->irq_fd, .events = POLLIN };

		uint64_t v;

		event_loop_run_once(&h->vm.loop, 0);
		if (poll(&p, 1, 10) > 0)
			eventfd_read(h->d->irq_fd, &v);
	}
	return h_needs_reset(h);
}
#endif
