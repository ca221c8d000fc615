// SPDX-License-Identifier: MIT
/*
 * The virtio-mmio transport and split virtqueues, driven through MMIO as a
 * driver would, with virtio-rng as the device; every malformed case must
 * end in DEVICE_NEEDS_RESET with the VMM still standing.
 */
#include <stdlib.h>

#include "tests/unit/check_main.h"

#include "devices/virtio_rng.h"
#include "tests/unit/virtio_harness.h"

static struct harness H;

static void setup(void)
{
	h_init(&H);
	ck_assert_int_eq(virtio_rng_create(&H.vm), 0);
	H.d = H.vm.virtio[0];
}

static void teardown(void)
{
	h_fini(&H);
}

START_TEST(identity_registers)
{
	uint16_t half = 0xabcd;

	ck_assert_uint_eq(h_rd(&H, 0x000), 0x74726976);
	ck_assert_uint_eq(h_rd(&H, 0x004), 2);
	ck_assert_uint_eq(h_rd(&H, 0x008), 4);
	h_wr(&H, 0x014, 1);
	ck_assert(h_rd(&H, 0x010) & 1);                 /* VERSION_1 is bit 32 */
	/* Unaligned, short and unknown accesses: read 0, change nothing. */
	io_bus_access(&H.vm.mmio, H.d->base + 0x001, (uint8_t *)&half, 2, false);
	ck_assert_uint_eq(half, 0);
	ck_assert_uint_eq(h_rd(&H, 0x0f0), 0);
	h_wr(&H, 0x0f0, 0xffffffff);
	ck_assert_uint_eq(h_rd(&H, R_STATUS), 0);
	/* Queues that do not exist. */
	h_wr(&H, 0x030, 5);
	ck_assert_uint_eq(h_rd(&H, 0x034), 0);
}
END_TEST

START_TEST(random_bytes_and_dirty_pages)
{
	struct hbuf b = { H_DATA + 4000, 200, true };       /* crosses a page */
	uint8_t *p = h_ptr(&H, H_DATA + 4000, 200);
	uint32_t id, len;
	int nonzero = 0;

	ck_assert_uint_eq(h_setup_queue(&H, 0, 8, 0) & VIRTIO_STATUS_DRIVER_OK,
			  VIRTIO_STATUS_DRIVER_OK);
	h_post(&H, &b, 1);
	ck_assert(h_kick_wait(&H, 0, 1));
	h_used_elem(&H, 0, &id, &len);
	ck_assert_uint_eq(id, 0);
	ck_assert_uint_eq(len, 200);
	for (int i = 0; i < 200; i++)
		nonzero += p[i] != 0;
	ck_assert_int_gt(nonzero, 150);
	ck_assert(guest_mem_page_dirty(&H.vm.mem.regions[0], H_DATA / 4096));
	ck_assert(guest_mem_page_dirty(&H.vm.mem.regions[0], H_DATA / 4096 + 1));
	ck_assert(guest_mem_page_dirty(&H.vm.mem.regions[0], H_USED / 4096));
	ck_assert(!guest_mem_page_dirty(&H.vm.mem.regions[0], H_DATA / 4096 + 2));
	ck_assert(!h_needs_reset(&H));
	ck_assert(atomic_load(&H.d->isr) & VIRTIO_ISR_USED);
}
END_TEST

START_TEST(indirect_and_zero_length)
{
	uint64_t table = H_DATA + 0x10000;
	uint8_t *t = h_ptr(&H, table, 32);
	uint64_t a0 = H_DATA, a1 = H_DATA + 0x2000;
	uint32_t l0 = 16, l1 = 0, id, len;
	uint16_t f0 = VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, f1 = VRING_DESC_F_WRITE, n1 = 1;

	h_setup_queue(&H, 0, 8, VIRTIO_F_RING_INDIRECT_DESC);
	memset(t, 0, 32);
	memcpy(t, &a0, 8); memcpy(t + 8, &l0, 4); memcpy(t + 12, &f0, 2); memcpy(t + 14, &n1, 2);
	memcpy(t + 16, &a1, 8); memcpy(t + 24, &l1, 4); memcpy(t + 28, &f1, 2);
	h_desc(&H, 0, table, 32, VRING_DESC_F_INDIRECT, 0);
	h_publish(&H, 0);
	ck_assert(h_kick_wait(&H, 0, 1));
	h_used_elem(&H, 0, &id, &len);
	ck_assert_uint_eq(len, 16);
	ck_assert(!h_needs_reset(&H));
}
END_TEST

START_TEST(notify_before_driver_ok)
{
	h_wr(&H, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	h_wr(&H, R_NOTIFY, 0);
	h_wr(&H, R_NOTIFY, 77);                 /* no such queue */
	event_loop_run_once(&H.vm.loop, 10);
	ck_assert(!h_needs_reset(&H));
	ck_assert_uint_eq(h_rd(&H, R_STATUS), VIRTIO_STATUS_ACKNOWLEDGE);
}
END_TEST

START_TEST(features_refused)
{
	/* Legacy driver (no VERSION_1): FEATURES_OK does not stick. */
	h_wr(&H, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	h_wr(&H, 0x020, 0);
	h_wr(&H, R_STATUS, h_rd(&H, R_STATUS) | VIRTIO_STATUS_FEATURES_OK);
	ck_assert(!(h_rd(&H, R_STATUS) & VIRTIO_STATUS_FEATURES_OK));
	/* A feature we never offered. */
	ck_assert(!(h_setup_queue(&H, 0, 8, 1ULL << 40) & VIRTIO_STATUS_FEATURES_OK));
}
END_TEST

START_TEST(bad_queue_sizes)
{
	static const uint16_t sizes[] = { 0, 3, 100, 2048 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		h_setup_queue(&H, 0, sizes[i], 0);
		ck_assert_msg(h_needs_reset(&H) || !h_rd(&H, 0x044), "size %u", sizes[i]);
		h_wr(&H, R_STATUS, 0);
		ck_assert_uint_eq(h_rd(&H, R_STATUS), 0);
	}
}
END_TEST

START_TEST(rings_outside_ram)
{
	h_wr(&H, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	h_wr(&H, 0x024, 1);
	h_wr(&H, 0x020, 1);
	h_wr(&H, R_STATUS, h_rd(&H, R_STATUS) | VIRTIO_STATUS_FEATURES_OK);
	h_wr(&H, 0x038, 8);
	h_wr(&H, 0x080, 0xC0000000);            /* the MMIO hole */
	h_wr(&H, 0x090, (uint32_t)H_AVAIL);
	h_wr(&H, 0x0a0, (uint32_t)H_USED);
	h_wr(&H, 0x044, 1);
	ck_assert(h_needs_reset(&H));
	ck_assert_uint_eq(h_rd(&H, 0x044), 0);
	ck_assert(atomic_load(&H.d->isr) & VIRTIO_ISR_CONFIG);
}
END_TEST

START_TEST(buffer_outside_ram)
{
	struct hbuf b[] = {
		{ 0xC0000000, 64, true },               /* MMIO hole */
		{ H_RAM - 8, 64, true },                /* runs off the end of RAM */
		{ 0xFFFFFFFFFFFFFFF0ULL, 64, true },    /* wraps */
	};

	for (size_t i = 0; i < 3; i++) {
		h_setup_queue(&H, 0, 8, 0);
		h_post(&H, &b[i], 1);
		ck_assert_msg(h_kick_expect_reset(&H, 0), "case %zu", i);
		ck_assert_uint_eq(h_used_idx(&H), 0);
	}
}
END_TEST

START_TEST(descriptor_loop)
{
	h_setup_queue(&H, 0, 8, 0);
	h_desc(&H, 0, H_DATA, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	h_desc(&H, 1, H_DATA, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0);
	h_publish(&H, 0);
	ck_assert(h_kick_expect_reset(&H, 0));
	/* Reset recovers the device completely. */
	ck_assert(!(h_setup_queue(&H, 0, 8, 0) & VIRTIO_STATUS_NEEDS_RESET));
	h_post(&H, &(struct hbuf){ H_DATA, 8, true }, 1);
	ck_assert(h_kick_wait(&H, 0, 1));
}
END_TEST

START_TEST(bad_indices)
{
	h_setup_queue(&H, 0, 8, 0);
	h_desc(&H, 0, H_DATA, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 99);
	h_publish(&H, 0);
	ck_assert(h_kick_expect_reset(&H, 0));
	h_setup_queue(&H, 0, 8, 0);
	h_publish(&H, 42);                      /* head beyond the table */
	ck_assert(h_kick_expect_reset(&H, 0));
	h_setup_queue(&H, 0, 8, 0);
	*(uint16_t *)h_ptr(&H, H_AVAIL + 2, 2) = 1000;  /* more available than the ring holds */
	ck_assert(h_kick_expect_reset(&H, 0));
}
END_TEST

/*
 * An indirect table at H_ITABLE of `out` readable then `in` writable entries,
 * all at [addr, addr + len) (overlapping: the harness has 16 MiB of RAM),
 * as the chain of descriptor 0. The only way past 256 buffers here: rng's
 * queues hold 256 descriptors, and a chain has at most that many hops.
 */
#define H_ITABLE (H_DATA + 0x10000)
static void h_indirect_chain(unsigned out, unsigned in, uint64_t addr, uint32_t len)
{
	unsigned n = out + in;
	uint8_t *t = h_ptr(&H, H_ITABLE, 16ULL * n);

	for (unsigned i = 0; i < n; i++) {
		uint16_t flags = (i >= out ? VRING_DESC_F_WRITE : 0) | (i + 1 < n ? VRING_DESC_F_NEXT : 0);
		uint16_t next = (uint16_t)(i + 1);

		memcpy(t + 16 * i, &addr, 8);
		memcpy(t + 16 * i + 8, &len, 4);
		memcpy(t + 16 * i + 12, &flags, 2);
		memcpy(t + 16 * i + 14, &next, 2);
	}
	h_setup_queue(&H, 0, 8, VIRTIO_F_RING_INDIRECT_DESC);
	h_desc(&H, 0, H_ITABLE, 16 * n, VRING_DESC_F_INDIRECT, 0);
	h_publish(&H, 0);
}

/* At most VQ_MAX_SG (256) buffers each way: that many are served, one more
 * is not; a whole queue of writable buffers is served too. */
START_TEST(chain_too_long)
{
	h_setup_queue(&H, 0, 256, 0);
	for (unsigned i = 0; i < 256; i++)
		h_desc(&H, (uint16_t)i, H_DATA + 64ULL * i, 64,
		       VRING_DESC_F_WRITE | (i + 1 < 256 ? VRING_DESC_F_NEXT : 0), (uint16_t)(i + 1));
	h_publish(&H, 0);
	ck_assert(h_kick_wait(&H, 0, 1));
	h_indirect_chain(VQ_MAX_SG, VQ_MAX_SG, H_DATA, 64);
	ck_assert(h_kick_wait(&H, 0, 1));
	ck_assert(!h_needs_reset(&H));
	h_indirect_chain(0, VQ_MAX_SG + 1, H_DATA, 64);
	ck_assert(h_kick_expect_reset(&H, 0));
	h_indirect_chain(VQ_MAX_SG + 1, 1, H_DATA, 64);
	ck_assert(h_kick_expect_reset(&H, 0));
}
END_TEST

/* A chain carries 4 GiB at most. */
START_TEST(chain_bytes_bound)
{
	const uint32_t len = 15 << 20;  /* [1 MiB, 16 MiB): all of RAM above H_DATA */

	h_indirect_chain(136, 136, H_DATA, len);        /* 4080 MiB */
	ck_assert(h_kick_wait(&H, 0, 1));
	ck_assert(!h_needs_reset(&H));
	h_indirect_chain(137, 137, H_DATA, len);        /* 4110 MiB */
	ck_assert(h_kick_expect_reset(&H, 0));
}
END_TEST

/* Indirect tables: 1024 entries at most, inside RAM, and only as a chain's
 * only descriptor. */
START_TEST(indirect_bounds)
{
	uint64_t table = H_ITABLE, a = H_DATA;
	uint8_t *t = h_ptr(&H, table, 16 * 1025);
	uint32_t l = 8;
	uint16_t f = VRING_DESC_F_WRITE;

	memset(t, 0, 16 * 1025);
	memcpy(t, &a, 8); memcpy(t + 8, &l, 4); memcpy(t + 12, &f, 2);
	h_setup_queue(&H, 0, 8, VIRTIO_F_RING_INDIRECT_DESC);
	h_desc(&H, 0, table, 16 * 1024, VRING_DESC_F_INDIRECT, 0);
	h_publish(&H, 0);
	ck_assert(h_kick_wait(&H, 0, 1));
	ck_assert(!h_needs_reset(&H));
	h_setup_queue(&H, 0, 8, VIRTIO_F_RING_INDIRECT_DESC);
	h_desc(&H, 0, table, 16 * 1025, VRING_DESC_F_INDIRECT, 0);
	h_publish(&H, 0);
	ck_assert(h_kick_expect_reset(&H, 0));
	/* After a buffer of the same chain, or with one after it. */
	h_setup_queue(&H, 0, 8, VIRTIO_F_RING_INDIRECT_DESC);
	h_desc(&H, 0, H_DATA + 64, 8, VRING_DESC_F_NEXT, 1);
	h_desc(&H, 1, table, 16, VRING_DESC_F_INDIRECT, 0);
	h_publish(&H, 0);
	ck_assert(h_kick_expect_reset(&H, 0));
	h_setup_queue(&H, 0, 8, VIRTIO_F_RING_INDIRECT_DESC);
	h_desc(&H, 0, table, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
	h_desc(&H, 1, H_DATA + 64, 8, VRING_DESC_F_WRITE, 0);
	h_publish(&H, 0);
	ck_assert(h_kick_expect_reset(&H, 0));
	/* A table in the MMIO hole. */
	h_setup_queue(&H, 0, 8, VIRTIO_F_RING_INDIRECT_DESC);
	h_desc(&H, 0, 0xC0000000, 16, VRING_DESC_F_INDIRECT, 0);
	h_publish(&H, 0);
	ck_assert(h_kick_expect_reset(&H, 0));
}
END_TEST

START_TEST(bad_indirect)
{
	uint64_t table = H_DATA + 0x10000;

	/* Indirect without the feature; nested indirect; odd length. */
	h_setup_queue(&H, 0, 8, 0);
	h_desc(&H, 0, table, 16, VRING_DESC_F_INDIRECT, 0);
	h_publish(&H, 0);
	ck_assert(h_kick_expect_reset(&H, 0));
	h_setup_queue(&H, 0, 8, VIRTIO_F_RING_INDIRECT_DESC);
	memset(h_ptr(&H, table, 16), 0, 16);
	*(uint64_t *)h_ptr(&H, table, 8) = table;
	*(uint32_t *)h_ptr(&H, table + 8, 4) = 16;
	*(uint16_t *)h_ptr(&H, table + 12, 2) = VRING_DESC_F_INDIRECT;
	h_desc(&H, 0, table, 16, VRING_DESC_F_INDIRECT, 0);
	h_publish(&H, 0);
	ck_assert(h_kick_expect_reset(&H, 0));
	h_setup_queue(&H, 0, 8, VIRTIO_F_RING_INDIRECT_DESC);
	h_desc(&H, 0, table, 15, VRING_DESC_F_INDIRECT, 0);
	h_publish(&H, 0);
	ck_assert(h_kick_expect_reset(&H, 0));
}
END_TEST

START_TEST(readable_after_writable)
{
	struct hbuf b[] = { { H_DATA, 8, true }, { H_DATA + 8, 8, false } };

	h_setup_queue(&H, 0, 8, 0);
	h_post(&H, b, 2);
	ck_assert(h_kick_expect_reset(&H, 0));
}
END_TEST

/* rng runs on the main loop: one loop turn after the kick serves it. */
static void kick_and_serve(void)
{
	h_wr(&H, R_NOTIFY, 0);
	ck_assert_int_ge(event_loop_run_once(&H.vm.loop, 1000), 1);
}

START_TEST(event_idx_suppresses)
{
	uint16_t *used_event = h_ptr(&H, H_AVAIL + 4 + 2 * 8, 2);
	uint64_t v;

	h_setup_queue(&H, 0, 8, VIRTIO_F_RING_EVENT_IDX);
	*used_event = 5;        /* "interrupt me when used idx passes 5" */
	h_post(&H, &(struct hbuf){ H_DATA, 8, true }, 1);
	kick_and_serve();
	ck_assert_uint_eq(h_used_idx(&H), 1);
	/* The first push always notifies (nothing signalled yet)... */
	ck_assert_int_eq(eventfd_read(H.d->irq_fd, &v), 0);
	/* ...the next does not: the driver asked for used idx 6. */
	h_post(&H, &(struct hbuf){ H_DATA, 8, true }, 1);
	kick_and_serve();
	ck_assert_uint_eq(h_used_idx(&H), 2);
	ck_assert_int_ne(eventfd_read(H.d->irq_fd, &v), 0);
	/* avail_event tells the driver where we are. */
	ck_assert_uint_eq(*(uint16_t *)h_ptr(&H, H_USED + 4 + 8 * 8, 2), 2);
	/* Crossing used_event notifies again. */
	*used_event = 2;
	h_post(&H, &(struct hbuf){ H_DATA, 8, true }, 1);
	kick_and_serve();
	ck_assert_int_eq(eventfd_read(H.d->irq_fd, &v), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("virtio");
	TCase *tc = tcase_create("transport");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, identity_registers);
	tcase_add_test(tc, random_bytes_and_dirty_pages);
	tcase_add_test(tc, indirect_and_zero_length);
	tcase_add_test(tc, notify_before_driver_ok);
	tcase_add_test(tc, features_refused);
	tcase_add_test(tc, bad_queue_sizes);
	tcase_add_test(tc, rings_outside_ram);
	tcase_add_test(tc, buffer_outside_ram);
	tcase_add_test(tc, descriptor_loop);
	tcase_add_test(tc, bad_indices);
	tcase_add_test(tc, chain_too_long);
	tcase_add_test(tc, chain_bytes_bound);
	tcase_add_test(tc, indirect_bounds);
	tcase_add_test(tc, bad_indirect);
	tcase_add_test(tc, readable_after_writable);
	tcase_add_test(tc, event_idx_suppresses);
	suite_add_tcase(s, tc);
	return check_run(s);
}
