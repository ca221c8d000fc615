// SPDX-License-Identifier: MIT
#include <check.h>

#include "tests/unit/check_main.h"
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "vmm/guest_mem.h"

START_TEST(layout_low_only)
{
	struct guest_mem m;

	ck_assert_int_eq(guest_mem_init(&m, 256 * MiB), 0);
	ck_assert_uint_eq(m.nr_regions, 1);
	ck_assert_uint_eq(m.regions[0].gpa, 0);
	ck_assert_uint_eq(m.regions[0].size, 256 * MiB);
	ck_assert_ptr_nonnull(guest_mem_ptr(&m, 256 * MiB - 4096, 4096));
	ck_assert_ptr_null(guest_mem_ptr(&m, 256 * MiB - 4096, 4097));
	ck_assert_ptr_null(guest_mem_ptr(&m, 256 * MiB, 1));
	ck_assert_ptr_null(guest_mem_ptr(&m, UINT64_MAX, 2));
	guest_mem_destroy(&m);
}
END_TEST

START_TEST(layout_across_hole)
{
	struct guest_mem m;
	uint8_t b = 0x5a, r = 0;

	ck_assert_int_eq(guest_mem_init(&m, 5 * GiB), 0);
	ck_assert_uint_eq(m.nr_regions, 2);
	ck_assert_uint_eq(m.regions[0].size, 3 * GiB);
	ck_assert_uint_eq(m.regions[1].gpa, 4 * GiB);
	ck_assert_uint_eq(m.regions[1].size, 2 * GiB);
	ck_assert_uint_eq(m.ram_size, 5 * GiB);
	/* Nothing in the hole, nothing past the end, no access spanning regions. */
	ck_assert_ptr_null(guest_mem_ptr(&m, LAYOUT_MMIO_HOLE, 1));
	ck_assert_ptr_null(guest_mem_ptr(&m, 3 * GiB - 1, 2));
	ck_assert_ptr_null(guest_mem_ptr(&m, 6 * GiB, 1));
	ck_assert_int_eq(guest_mem_write(&m, 6 * GiB - 1, &b, 1), 0);
	ck_assert_int_eq(guest_mem_read(&m, 6 * GiB - 1, &r, 1), 0);
	ck_assert_uint_eq(r, 0x5a);
	ck_assert_int_eq(guest_mem_write(&m, 6 * GiB - 1, &b, 2), -1);
	ck_assert_uint_eq(guest_mem_end_below(&m, LAYOUT_MMIO_HOLE), 3 * GiB);
	ck_assert_uint_eq(guest_mem_end_below(&m, 1 * GiB), 1 * GiB);
	guest_mem_destroy(&m);
}
END_TEST

START_TEST(bad_sizes)
{
	struct guest_mem m;

	ck_assert_int_eq(guest_mem_init(&m, 0), -1);
	ck_assert_int_eq(guest_mem_init(&m, 4097), -1);
}
END_TEST

/* Every page a VMM write touches is marked, including both ends of a write
 * that crosses page boundaries, and nothing else. */
START_TEST(dirty_write_crossing_pages)
{
	struct guest_mem m;
	struct mem_region *r;
	uint8_t buf[3 * 4096 + 2];
	uint64_t *bits;
	uint64_t words;

	ck_assert_int_eq(guest_mem_init(&m, 64 * MiB), 0);
	r = &m.regions[0];
	words = (r->size / 4096 + 63) / 64;
	bits = calloc(words, 8);
	memset(buf, 0xab, sizeof(buf));
	/* Starts 1 byte before page 10 ends, ends 1 byte into page 14. */
	ck_assert_int_eq(guest_mem_write(&m, 11 * 4096 - 1, buf, sizeof(buf)), 0);
	for (uint64_t p = 0; p < 20; p++)
		ck_assert_msg(guest_mem_page_dirty(r, p) == (p >= 10 && p <= 14), "page %lu", p);
	ck_assert_uint_eq(guest_mem_harvest_dirty(r, bits), 5);
	ck_assert_uint_eq(bits[0], 0x1fULL << 10);
	/* Harvest clears. */
	ck_assert(!guest_mem_page_dirty(r, 12));
	ck_assert_uint_eq(guest_mem_harvest_dirty(r, bits), 0);
	/* A one-byte write at the end of a page marks one page; across word boundary. */
	guest_mem_mark_dirty(&m, 64 * 4096 - 1, 2);
	ck_assert(guest_mem_page_dirty(r, 63) && guest_mem_page_dirty(r, 64));
	ck_assert(!guest_mem_page_dirty(r, 65));
	/* Outside RAM: ignored, no crash. */
	guest_mem_mark_dirty(&m, 64 * MiB, 4096);
	guest_mem_mark_dirty(&m, 64 * MiB - 1, 1ULL << 40);
	ck_assert(guest_mem_page_dirty(r, 64 * MiB / 4096 - 1));
	free(bits);
	guest_mem_destroy(&m);
}
END_TEST

START_TEST(dirty_high_region)
{
	struct guest_mem m;
	const struct mem_region *r;
	uint32_t v = 1;

	ck_assert_int_eq(guest_mem_init(&m, 4 * GiB), 0);
	ck_assert_int_eq(guest_mem_write(&m, 4 * GiB + 8192, &v, 4), 0);
	r = guest_mem_region(&m, 4 * GiB);
	ck_assert(guest_mem_page_dirty(r, 2));
	ck_assert(!guest_mem_page_dirty(&m.regions[0], 2));
	guest_mem_destroy(&m);
}
END_TEST

/* Loading writes through the memfd, lands where the mapping shows it, marks
 * nothing dirty and refuses to run past the region. */
START_TEST(load_through_memfd)
{
	struct guest_mem m;
	const struct mem_region *r;
	uint8_t buf[3 * 4096];

	memset(buf, 0x5a, sizeof(buf));
	ck_assert_int_eq(guest_mem_init(&m, 64 * MiB), 0);
	r = &m.regions[0];
	ck_assert_int_eq(guest_mem_load(r, 4096, buf, sizeof(buf)), 0);
	ck_assert_int_eq(r->hva[4095], 0);
	ck_assert_int_eq(r->hva[4096], 0x5a);
	ck_assert_int_eq(r->hva[4 * 4096 - 1], 0x5a);
	ck_assert_int_eq(r->hva[4 * 4096], 0);
	ck_assert(!guest_mem_page_dirty(r, 1));
	ck_assert_int_eq(guest_mem_load(r, r->size - 4096, buf, sizeof(buf)), -1);
	ck_assert_int_eq(guest_mem_load(r, r->size + 4096, buf, 1), -1);
	guest_mem_destroy(&m);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("guest_mem");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, layout_low_only);
	tcase_add_test(tc, layout_across_hole);
	tcase_add_test(tc, bad_sizes);
	tcase_add_test(tc, dirty_write_crossing_pages);
	tcase_add_test(tc, dirty_high_region);
	tcase_add_test(tc, load_through_memfd);
	suite_add_tcase(s, tc);
	return check_run(s);
}
