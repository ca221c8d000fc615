/* SPDX-License-Identifier: MIT */
/*
 * Shared by test_boot.c and test_boot_elf.c: a small guest RAM, synthetic
 * kernel images, and a way to call x86_load_kernel() capturing what it says
 * on stderr, so a test can hold it to "exactly one error line".
 */
#ifndef TESTS_UNIT_BOOT_HARNESS_H
#define TESTS_UNIT_BOOT_HARNESS_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/boot.h"
#include "arch/x86/layout.h"
#include "vmm/guest_mem.h"

#define TEST_RAM   (64 * MiB)
#define TEST_RSDP  LAYOUT_ACPI_START

static struct guest_mem mem;
static char errbuf[4096];

static inline void mem_setup(void)
{
	ck_assert_int_eq(guest_mem_init(&mem, TEST_RAM), 0);
}

static inline void mem_teardown(void)
{
	guest_mem_destroy(&mem);
}

static inline struct boot_config default_cfg(enum boot_protocol p)
{
	return (struct boot_config){
		.protocol = p, .cmdline = "console=ttyS0 quiet",
		.rsdp_gpa = TEST_RSDP, .acpi_gpa = LAYOUT_ACPI_START,
		.acpi_size = LAYOUT_ACPI_SIZE,
	};
}

/* Load a private copy of exactly `size` bytes (so ASan sees any overread),
 * with stderr captured into errbuf. */
static inline int load_captured(const uint8_t *img, size_t size, const struct boot_config *cfg,
			 struct boot_entry *e)
{
	uint8_t *copy = size ? malloc(size) : NULL;
	int fd = memfd_create("stderr", 0), saved = dup(2), ret;
	ssize_t n;

	ck_assert(fd >= 0 && saved >= 0);
	if (size)
		memcpy(copy, img, size);
	fflush(stderr);
	dup2(fd, 2);
	ret = x86_load_kernel(&mem, copy, size, cfg, e);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, errbuf, sizeof(errbuf) - 1, 0);
	errbuf[n > 0 ? n : 0] = 0;
	close(fd);
	free(copy);
	return ret;
}

static inline unsigned count_lines(const char *s)
{
	unsigned n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* -1, exactly one line of error, and it contains `what`. */
#define ck_load_fails(img, size, cfg, what) do {                               \
		struct boot_entry __e;                                         \
		ck_assert_int_eq(load_captured(img, size, cfg, &__e), -1);     \
		ck_assert_msg(count_lines(errbuf) == 1, "want one line: %s", errbuf); \
		ck_assert_msg(strstr(errbuf, what), "want '%s' in: %s", what, errbuf); \
	} while (0)

static inline uint64_t rd64(uint64_t gpa)
{
	uint64_t v = 0;

	ck_assert_int_eq(guest_mem_read(&mem, gpa, &v, sizeof(v)), 0);
	return v;
}

static inline uint32_t rd32(uint64_t gpa)
{
	uint32_t v = 0;

	ck_assert_int_eq(guest_mem_read(&mem, gpa, &v, sizeof(v)), 0);
	return v;
}

static inline void check_gdt(const struct boot_entry *e)
{
	ck_assert_uint_eq(e->gdt_base, LAYOUT_GDT);
	ck_assert_uint_eq(e->gdt_limit, 31);
	ck_assert_uint_eq(rd64(LAYOUT_GDT), 0);
	ck_assert_uint_eq(rd64(LAYOUT_GDT + 0x08), 0x00CF9B000000FFFFULL);
	ck_assert_uint_eq(rd64(LAYOUT_GDT + 0x10), 0x00AF9B000000FFFFULL);
	ck_assert_uint_eq(rd64(LAYOUT_GDT + 0x18), 0x00CF93000000FFFFULL);
}

static inline int run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

#endif
