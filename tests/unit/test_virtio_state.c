// SPDX-License-Identifier: MIT
/*
 * Device state round trips: a device that has served requests is quiesced
 * and saved; a fresh device with the same backend (and a copy of guest RAM)
 * loads it and carries on exactly where the first stopped. Bad state is
 * refused with a message, never half-applied silently.
 */
#include <fcntl.h>
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/unit/check_main.h"
#include <unistd.h>

#include "devices/virtio_blk.h"
#include "devices/virtio_rng.h"
#include "tests/unit/virtio_harness.h"

static struct harness A, B;
static char img[64];

static void copy_ram(struct harness *from, struct harness *to)
{
	memcpy(to->vm.mem.regions[0].hva, from->vm.mem.regions[0].hva, H_RAM);
}

static void *save_all(struct harness *h, size_t *len)
{
	struct state_writer w;
	void *blob;

	ck_assert_int_eq(state_writer_init(&w), 0);
	for (unsigned i = 0; i < h->vm.nr_virtio; i++) {
		virtio_mmio_quiesce(h->vm.virtio[i]);
		virtio_mmio_save(h->vm.virtio[i], &w);
	}
	ck_assert_int_eq(state_writer_finish(&w, &blob, len), 0);
	return blob;
}

static int load_all(struct harness *h, const void *blob, size_t len)
{
	struct state_reader r;

	if (state_reader_open(&r, blob, len) < 0)
		return -1;
	for (unsigned i = 0; i < h->vm.nr_virtio; i++)
		if (virtio_mmio_load(h->vm.virtio[i], &r) < 0)
			return -1;
	return 0;
}

/* B continues A's queue: same ring position in B's harness bookkeeping. */
static void adopt_driver_state(struct harness *from, struct harness *to)
{
	to->qsize = from->qsize;
	to->next_desc = from->next_desc;
	to->avail_idx = from->avail_idx;
}

START_TEST(rng_round_trip)
{
	void *blob;
	size_t len;
	static const uint32_t regs[] = { 0x000, 0x004, 0x008, 0x034, 0x044, 0x060, 0x070, 0x0fc };

	h_init(&A);
	h_init(&B);
	ck_assert_int_eq(virtio_rng_create(&A.vm), 0);
	ck_assert_int_eq(virtio_rng_create(&B.vm), 0);
	A.d = A.vm.virtio[0];
	B.d = B.vm.virtio[0];
	h_setup_queue(&A, 0, 16, VIRTIO_F_RING_EVENT_IDX);
	for (int i = 0; i < 3; i++) {
		h_post(&A, &(struct hbuf){ H_DATA + 64ULL * i, 64, true }, 1);
		ck_assert(h_kick_wait(&A, 0, (uint16_t)(i + 1)));
	}
	blob = save_all(&A, &len);
	copy_ram(&A, &B);
	ck_assert_int_eq(load_all(&B, blob, len), 0);
	virtio_mmio_resume(B.d);
	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
		ck_assert_uint_eq(h_rd(&A, regs[i]), h_rd(&B, regs[i]));
	ck_assert_uint_eq(B.d->driver_features, A.d->driver_features);
	adopt_driver_state(&A, &B);
	h_post(&B, &(struct hbuf){ H_DATA + 1024, 64, true }, 1);
	ck_assert(h_kick_wait(&B, 0, 4));
	free(blob);
	h_fini(&A);
	h_fini(&B);
}
END_TEST

static void make_image(void)
{
	int fd;

	snprintf(img, sizeof(img), "/tmp/minivmm-st-XXXXXX");
	fd = mkstemp(img);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 1 << 20), 0);
	close(fd);
}

static void blk_on(struct harness *h, bool ro)
{
	char arg[96];
	struct disk_config cfg;

	snprintf(arg, sizeof(arg), "%s,serial=s1%s", img, ro ? ",readonly" : "");
	h_init(h);
	ck_assert_int_eq(disk_config_parse(arg, &cfg), 0);
	ck_assert_int_eq(virtio_blk_create(&h->vm, &cfg), 0);
	h->d = h->vm.virtio[0];
}

START_TEST(blk_round_trip_and_mismatch)
{
	uint32_t hdr[4] = { 0, 0, 2, 0 };
	struct hbuf req[] = { { H_DATA, 16, false }, { H_DATA + 4096, 512, true },
			      { H_DATA + 8192, 1, true } };
	void *blob;
	size_t len;
	struct harness C;

	make_image();
	blk_on(&A, true);
	h_setup_queue(&A, 0, 32, 0);
	memcpy(h_ptr(&A, H_DATA, 16), hdr, 16);
	h_post(&A, req, 3);
	ck_assert(h_kick_wait(&A, 0, 1));
	blob = save_all(&A, &len);
	h_fini(&A);                     /* the lock moves with the "migration" */
	blk_on(&B, true);
	ck_assert_int_eq(load_all(&B, blob, len), 0);
	/* B's RAM is not A's: give it A's avail index before resume kicks the
	 * device, as restoring RAM first would. */
	B.qsize = 32;
	B.next_desc = 3;
	B.avail_idx = 1;
	h_post(&B, req, 3);
	virtio_mmio_resume(B.d);
	ck_assert_uint_eq(h_rd(&B, R_STATUS), h_rd(&B, R_STATUS) | VIRTIO_STATUS_DRIVER_OK);
	ck_assert(h_kick_wait(&B, 0, 2));
	h_fini(&B);
	/* The same state against a writable image of the same size: refused. */
	blk_on(&C, false);
	ck_assert_int_eq(load_all(&C, blob, len), -1);
	h_fini(&C);
	/* ...and against an image of another size. */
	ck_assert_int_eq(truncate(img, 2 << 20), 0);
	blk_on(&C, true);
	ck_assert_int_eq(load_all(&C, blob, len), -1);
	h_fini(&C);
	free(blob);
	unlink(img);
}
END_TEST

/* Handcrafted states a hostile or buggy stream could carry. */
static void *state_with(uint32_t devid, uint32_t version, uint32_t qsize, uint64_t desc,
			size_t *len)
{
	struct state_writer w;
	void *blob;

	ck_assert_int_eq(state_writer_init(&w), 0);
	state_node_begin(&w, "virtio0", version);
	state_put_u32(&w, "device-id", devid);
	state_put_u32(&w, "status", 0xf);
	state_put_u64(&w, "driver-features", VIRTIO_F_VERSION_1);
	state_put_u32(&w, "device-features-sel", 0);
	state_put_u32(&w, "driver-features-sel", 0);
	state_put_u32(&w, "queue-sel", 0);
	state_put_u32(&w, "config-generation", 0);
	state_put_u32(&w, "isr", 0);
	state_node_begin(&w, "queue0", 1);
	state_put_u32(&w, "size", qsize);
	state_put_u32(&w, "ready", 1);
	state_put_u64(&w, "desc", desc);
	state_put_u64(&w, "avail", H_AVAIL);
	state_put_u64(&w, "used", H_USED);
	state_put_u32(&w, "last-avail", 0);
	state_put_u32(&w, "used-idx", 0);
	state_put_u32(&w, "signalled-used", 0);
	state_put_u32(&w, "signalled-valid", 0);
	state_node_end(&w);
	state_node_end(&w);
	ck_assert_int_eq(state_writer_finish(&w, &blob, len), 0);
	return blob;
}

START_TEST(bad_states_refused)
{
	struct { uint32_t id, ver, qsize; uint64_t desc; int expect; } cases[] = {
		{ 4, 1, 16, H_DESC, 0 },                /* the good one */
		{ 2, 1, 16, H_DESC, -1 },               /* a block device's state */
		{ 4, 2, 16, H_DESC, -1 },               /* newer version */
		{ 4, 1, 17, H_DESC, -1 },               /* not a power of two */
		{ 4, 1, 4096, H_DESC, -1 },             /* larger than the device allows */
		{ 4, 1, 16, 0xC0000000ULL, -1 },        /* rings in the MMIO hole */
		{ 4, 1, 16, H_RAM - 16, -1 },           /* running off the end of RAM */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		void *blob = state_with(cases[i].id, cases[i].ver, cases[i].qsize, cases[i].desc, &len);

		h_init(&A);
		ck_assert_int_eq(virtio_rng_create(&A.vm), 0);
		ck_assert_msg(load_all(&A, blob, len) == cases[i].expect, "case %zu", i);
		/* Truncated and bit-flipped blobs never get past the reader. */
		ck_assert_int_eq(load_all(&A, blob, len / 2), -1);
		((uint8_t *)blob)[4] ^= 0x40;   /* totalsize */
		ck_assert_int_eq(load_all(&A, blob, len), -1);
		h_fini(&A);
		free(blob);
	}
}
END_TEST

START_TEST(state_is_a_dtb)
{
	size_t len;
	void *blob = state_with(4, 1, 16, H_DESC, &len);
	int node;

	ck_assert_int_eq(fdt_check_full(blob, len), 0);
	node = fdt_path_offset(blob, "/virtio0/queue0");
	ck_assert_int_ge(node, 0);
	ck_assert_ptr_nonnull(fdt_getprop(blob, node, "last-avail", NULL));
	free(blob);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("virtio-state");
	TCase *tc = tcase_create("state");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, rng_round_trip);
	tcase_add_test(tc, blk_round_trip_and_mismatch);
	tcase_add_test(tc, bad_states_refused);
	tcase_add_test(tc, state_is_a_dtb);
	suite_add_tcase(s, tc);
	return check_run(s);
}
