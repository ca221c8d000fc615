// SPDX-License-Identifier: MIT
/* The e820 map: legacy area reserved, ACPI typed where it is outside it,
 * RAM above 4 GiB listed, the MMIO hole absent, sorted, non-overlapping. */
#include <check.h>

#include "arch/x86/boot.h"
#include "arch/x86/layout.h"
#include "vmm/guest_mem.h"

static struct e820_entry map[E820_MAX];

static void expect(int i, uint64_t addr, uint64_t size, uint32_t type)
{
	ck_assert_uint_eq(map[i].addr, addr);
	ck_assert_uint_eq(map[i].size, size);
	ck_assert_uint_eq(map[i].type, type);
}

static void check_sorted(int n)
{
	for (int i = 1; i < n; i++)
		ck_assert_uint_ge(map[i].addr, map[i - 1].addr + map[i - 1].size);
}

static int build(uint64_t ram, uint64_t acpi, uint64_t acpi_size, struct guest_mem *m)
{
	int n;

	ck_assert_int_eq(guest_mem_init(m, ram), 0);
	n = e820_build(m, acpi, acpi_size, map, E820_MAX);
	check_sorted(n);
	return n;
}

START_TEST(ram_256m)
{
	struct guest_mem m;

	ck_assert_int_eq(build(256 * MiB, LAYOUT_ACPI_START, LAYOUT_ACPI_SIZE, &m), 3);
	expect(0, 0, 0x9FC00, E820_RAM);
	expect(1, 0x9FC00, 0x100000 - 0x9FC00, E820_RESERVED);
	expect(2, MiB, 255 * MiB, E820_RAM);
	guest_mem_destroy(&m);
}
END_TEST

START_TEST(ram_3g)
{
	struct guest_mem m;

	ck_assert_int_eq(build(3 * GiB, LAYOUT_ACPI_START, LAYOUT_ACPI_SIZE, &m), 3);
	expect(2, MiB, 3 * GiB - MiB, E820_RAM);
	guest_mem_destroy(&m);
}
END_TEST

START_TEST(ram_5g)
{
	struct guest_mem m;

	ck_assert_int_eq(build(5 * GiB, LAYOUT_ACPI_START, LAYOUT_ACPI_SIZE, &m), 4);
	expect(2, MiB, 3 * GiB - MiB, E820_RAM);
	expect(3, 4 * GiB, 2 * GiB, E820_RAM);     /* nothing for the hole */
	guest_mem_destroy(&m);
}
END_TEST

/* ACPI tables in ordinary RAM: typed ACPI, RAM split around them. */
START_TEST(acpi_elsewhere)
{
	struct guest_mem m;

	ck_assert_int_eq(build(256 * MiB, 32 * MiB, 0x10000, &m), 5);
	expect(2, MiB, 31 * MiB, E820_RAM);
	expect(3, 32 * MiB, 0x10000, E820_ACPI);
	expect(4, 32 * MiB + 0x10000, 224 * MiB - 0x10000, E820_RAM);
	guest_mem_destroy(&m);
}
END_TEST

/* Straddling the legacy area's end: the reserved part wins, the rest is ACPI. */
START_TEST(acpi_straddles_legacy)
{
	struct guest_mem m;

	ck_assert_int_eq(build(64 * MiB, 0xF0000, 0x20000, &m), 4);
	expect(1, 0x9FC00, 0x100000 - 0x9FC00, E820_RESERVED);
	expect(2, MiB, 0x10000, E820_ACPI);
	expect(3, MiB + 0x10000, 63 * MiB - 0x10000, E820_RAM);
	guest_mem_destroy(&m);
}
END_TEST

/* A bogus ACPI size saturates instead of wrapping; no ACPI outside RAM. */
START_TEST(acpi_bogus)
{
	struct guest_mem m;

	ck_assert_int_eq(build(64 * MiB, 8 * MiB, UINT64_MAX, &m), 4);
	expect(2, MiB, 7 * MiB, E820_RAM);
	expect(3, 8 * MiB, 56 * MiB, E820_ACPI);
	guest_mem_destroy(&m);
	ck_assert_int_eq(build(64 * MiB, 0, 0, &m), 3);
	guest_mem_destroy(&m);
}
END_TEST

START_TEST(too_small)
{
	struct guest_mem m;

	ck_assert_int_eq(guest_mem_init(&m, 5 * GiB), 0);
	ck_assert_int_eq(e820_build(&m, LAYOUT_ACPI_START, LAYOUT_ACPI_SIZE, map, 3), -1);
	ck_assert_int_eq(e820_build(&m, LAYOUT_ACPI_START, LAYOUT_ACPI_SIZE, map, 4), 4);
	guest_mem_destroy(&m);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("e820");
	TCase *tc = tcase_create("e820");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, ram_256m);
	tcase_add_test(tc, ram_3g);
	tcase_add_test(tc, ram_5g);
	tcase_add_test(tc, acpi_elsewhere);
	tcase_add_test(tc, acpi_straddles_legacy);
	tcase_add_test(tc, acpi_bogus);
	tcase_add_test(tc, too_small);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
