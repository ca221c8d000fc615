// SPDX-License-Identifier: MIT
/*
 * virtio-blk through its MMIO registers and a real image file: every
 * request type, bounds, read-only, locking, and malformed requests.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/unit/check_main.h"
#include <sys/stat.h>
#include <unistd.h>

#include "devices/virtio_blk.h"
#include "tests/unit/virtio_harness.h"

#define IMG_SECTORS 2048        /* 1 MiB */
#define HDR   (H_DATA)
#define DATA  (H_DATA + 0x1000)
#define STAT  (H_DATA + 0x9000)

static struct harness H;
static char img[64];

static void make_image(void)
{
	uint8_t sector[512];
	int fd;

	snprintf(img, sizeof(img), "/tmp/minivmm-blk-XXXXXX");
	fd = mkstemp(img);
	ck_assert_int_ge(fd, 0);
	for (int s = 0; s < IMG_SECTORS; s++) {
		memset(sector, s & 0xff, sizeof(sector));
		ck_assert_int_eq(write(fd, sector, 512), 512);
	}
	close(fd);
}

static void start(bool readonly)
{
	char arg[128];
	struct disk_config cfg;

	snprintf(arg, sizeof(arg), "%s,serial=disk-%s%s", img, readonly ? "ro" : "rw",
		 readonly ? ",readonly" : "");
	h_init(&H);
	ck_assert_int_eq(disk_config_parse(arg, &cfg), 0);
	ck_assert_int_eq(virtio_blk_create(&H.vm, &cfg), 0);
	H.d = H.vm.virtio[0];
	ck_assert_uint_eq(h_setup_queue(&H, 0, 64, 0) & VIRTIO_STATUS_NEEDS_RESET, 0);
}

static void setup_rw(void)
{
	make_image();
	start(false);
}

static void setup_ro(void)
{
	make_image();
	start(true);
}

static void teardown(void)
{
	h_fini(&H);
	unlink(img);
}

/* One request: header, optional data, status. Returns the status byte. */
static uint8_t request(uint32_t type, uint64_t sector, uint32_t data_len, bool data_in,
		       uint32_t *used_len)
{
	uint32_t hdr[4] = { type, 0, (uint32_t)sector, (uint32_t)(sector >> 32) };
	struct hbuf b[3] = { { HDR, 16, false } };
	unsigned n = 1;
	uint16_t want = (uint16_t)(h_used_idx(&H) + 1);
	uint32_t id;

	memcpy(h_ptr(&H, HDR, 16), hdr, 16);
	if (data_len)
		b[n++] = (struct hbuf){ DATA, data_len, data_in };
	b[n++] = (struct hbuf){ STAT, 1, true };
	*(uint8_t *)h_ptr(&H, STAT, 1) = 0xee;
	h_post(&H, b, n);
	ck_assert(h_kick_wait(&H, 0, want));
	h_used_elem(&H, (uint16_t)(want - 1), &id, used_len);
	return *(uint8_t *)h_ptr(&H, STAT, 1);
}

static void file_sector(uint64_t s, uint8_t *out)
{
	int fd = open(img, O_RDONLY);

	ck_assert_int_eq(pread(fd, out, 512, (off_t)s * 512), 512);
	close(fd);
}

START_TEST(config_space)
{
	uint64_t cap;

	io_bus_access(&H.vm.mmio, H.d->base + 0x100, (uint8_t *)&cap, 8, false);
	ck_assert_uint_eq(cap, IMG_SECTORS);
}
END_TEST

START_TEST(read_sectors)
{
	uint8_t *d = h_ptr(&H, DATA, 1024);
	uint32_t len;

	ck_assert_uint_eq(request(0, 3, 1024, true, &len), 0);
	ck_assert_uint_eq(len, 1025);
	for (int i = 0; i < 512; i++)
		ck_assert_uint_eq(d[i], 3);
	ck_assert_uint_eq(d[512], 4);
	ck_assert(guest_mem_page_dirty(&H.vm.mem.regions[0], DATA / 4096));
}
END_TEST

START_TEST(write_flush_and_file)
{
	uint8_t back[512];

	memset(h_ptr(&H, DATA, 512), 0x77, 512);
	ck_assert_uint_eq(request(1, 5, 512, false, &(uint32_t){ 0 }), 0);
	ck_assert_uint_eq(request(4, 0, 0, false, &(uint32_t){ 0 }), 0);
	file_sector(5, back);
	for (int i = 0; i < 512; i++)
		ck_assert_uint_eq(back[i], 0x77);
	file_sector(6, back);
	ck_assert_uint_eq(back[0], 6);
}
END_TEST

START_TEST(get_id)
{
	uint32_t len;

	ck_assert_uint_eq(request(8, 0, 20, true, &len), 0);
	ck_assert_mem_eq(h_ptr(&H, DATA, 8), "disk-rw", 8);
}
END_TEST

START_TEST(discard_and_write_zeroes)
{
	struct { uint64_t sector; uint32_t num, flags; } r = { 8, 16, 0 };
	uint8_t back[512], zero[512] = { 0 };

	memcpy(h_ptr(&H, DATA, 16), &r, 16);
	ck_assert_uint_eq(request(11, 0, 16, false, &(uint32_t){ 0 }), 0);
	file_sector(8, back);
	ck_assert_mem_eq(back, zero, 512);
	file_sector(23, back);
	ck_assert_mem_eq(back, zero, 512);
	file_sector(24, back);
	ck_assert_uint_eq(back[0], 24);
	r.sector = 100;
	r.num = 1;
	memcpy(h_ptr(&H, DATA, 16), &r, 16);
	ck_assert_uint_eq(request(13, 0, 16, false, &(uint32_t){ 0 }), 0);
	file_sector(100, back);
	ck_assert_mem_eq(back, zero, 512);
}
END_TEST

START_TEST(out_of_range_and_unknown)
{
	struct { uint64_t sector; uint32_t num, flags; } r = { IMG_SECTORS - 1, 2, 0 };

	ck_assert_uint_eq(request(0, IMG_SECTORS, 512, true, &(uint32_t){ 0 }), 1);
	ck_assert_uint_eq(request(0, IMG_SECTORS - 1, 1024, true, &(uint32_t){ 0 }), 1);
	ck_assert_uint_eq(request(1, UINT64_MAX / 2, 512, false, &(uint32_t){ 0 }), 1);
	ck_assert_uint_eq(request(0, 0, 100, true, &(uint32_t){ 0 }), 1);   /* not whole sectors */
	ck_assert_uint_eq(request(99, 0, 0, false, &(uint32_t){ 0 }), 2);
	memcpy(h_ptr(&H, DATA, 16), &r, 16);
	ck_assert_uint_eq(request(11, 0, 16, false, &(uint32_t){ 0 }), 1);
	ck_assert(!h_needs_reset(&H));
}
END_TEST

START_TEST(readonly_refuses_writes)
{
	uint8_t back[512];
	uint32_t feat;

	h_wr(&H, 0x014, 0);
	feat = h_rd(&H, 0x010);
	ck_assert(feat & (1U << 5));                    /* VIRTIO_BLK_F_RO */
	memset(h_ptr(&H, DATA, 512), 0x99, 512);
	ck_assert_uint_eq(request(1, 7, 512, false, &(uint32_t){ 0 }), 1);
	file_sector(7, back);
	ck_assert_uint_eq(back[0], 7);
	ck_assert_uint_eq(request(0, 7, 512, true, &(uint32_t){ 0 }), 0);
}
END_TEST

START_TEST(image_locked)
{
	char arg[128];
	struct disk_config cfg;
	struct harness h2;

	/* A second writer of the same image is refused while we hold it. */
	snprintf(arg, sizeof(arg), "%s", img);
	h_init(&h2);
	ck_assert_int_eq(disk_config_parse(arg, &cfg), 0);
	ck_assert_int_eq(virtio_blk_create(&h2.vm, &cfg), -1);
	ck_assert_uint_eq(h2.vm.nr_virtio, 0);
	h_fini(&h2);
}
END_TEST

START_TEST(short_header_and_no_status)
{
	struct hbuf b[] = { { HDR, 8, false }, { STAT, 1, true } };
	uint16_t want = (uint16_t)(h_used_idx(&H) + 1);
	uint32_t id, len;

	h_post(&H, b, 2);
	ck_assert(h_kick_wait(&H, 0, want));
	h_used_elem(&H, (uint16_t)(want - 1), &id, &len);
	ck_assert_uint_eq(len, 0);
	ck_assert(!h_needs_reset(&H));
}
END_TEST

START_TEST(bad_disk_args)
{
	char a1[] = ",readonly", a2[] = "x.img,bogus", a3[] = "x.img,serial=123456789012345678901";
	char a4[128];
	struct disk_config cfg;
	struct harness h2;

	ck_assert_int_eq(disk_config_parse(a1, &cfg), -1);
	ck_assert_int_eq(disk_config_parse(a2, &cfg), -1);
	ck_assert_int_eq(disk_config_parse(a3, &cfg), -1);
	snprintf(a4, sizeof(a4), "/nonexistent/disk.img");
	ck_assert_int_eq(disk_config_parse(a4, &cfg), 0);
	h_init(&h2);
	ck_assert_int_eq(virtio_blk_create(&h2.vm, &cfg), -1);
	h_fini(&h2);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("virtio-blk");
	TCase *rw = tcase_create("rw"), *ro = tcase_create("ro");

	tcase_add_checked_fixture(rw, setup_rw, teardown);
	tcase_add_checked_fixture(ro, setup_ro, teardown);
	tcase_set_timeout(rw, 30);
	tcase_add_test(rw, config_space);
	tcase_add_test(rw, read_sectors);
	tcase_add_test(rw, write_flush_and_file);
	tcase_add_test(rw, get_id);
	tcase_add_test(rw, discard_and_write_zeroes);
	tcase_add_test(rw, out_of_range_and_unknown);
	tcase_add_test(rw, image_locked);
	tcase_add_test(rw, short_header_and_no_status);
	tcase_add_test(rw, bad_disk_args);
	tcase_add_test(ro, readonly_refuses_writes);
	suite_add_tcase(s, rw);
	suite_add_tcase(s, ro);
	return check_run(s);
}
