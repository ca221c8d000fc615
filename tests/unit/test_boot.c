// SPDX-License-Identifier: MIT
/*
 * bzImage loading through the Linux 64-bit boot protocol, image detection,
 * read_file(), and (when scripts/fetch-kernels has run) Debian's real
 * kernels. ELF and PVH are in test_boot_elf.c, the e820 map in test_e820.c.
 */
#include <asm/bootparam.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/stat.h>

#include "boot_harness.h"

#define BZ_SECTS   4
#define BZ_SETUP   ((BZ_SECTS + 1) * 512)
#define BZ_PM      0x3000
#define BZ_SIZE    (BZ_SETUP + BZ_PM)
#define BZ_PREF    0x1000000ULL
#define BZ_INIT    (8 * MiB)
#define HDR(field) (0x1F1 + offsetof(struct setup_header, field))

static uint8_t bz[BZ_SIZE];

/* A bzImage as the kernel's build writes one, protocol 2.15. */
static void make_bzimage(void)
{
	struct setup_header h = {
		.setup_sects = BZ_SECTS, .syssize = BZ_PM / 16, .boot_flag = 0xAA55,
		.jump = 0x6AEB,         /* header ends at 0x202 + 0x6A = 0x26C */
		.header = 0x53726448, .version = 0x020F, .loadflags = LOADED_HIGH,
		.initrd_addr_max = 0x7FFFFFFF, .kernel_alignment = 0x200000,
		.relocatable_kernel = 1, .min_alignment = 21,
		.xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G,
		.cmdline_size = 2047, .pref_address = BZ_PREF, .init_size = BZ_INIT,
	};

	memset(bz, 0, sizeof(bz));
	memcpy(bz + 0x1F1, &h, sizeof(h));
	for (unsigned i = 0; i < BZ_PM; i++)
		bz[BZ_SETUP + i] = (uint8_t)(i * 7 + 3);
}

static void put(unsigned off, const void *v, size_t n)
{
	memcpy(bz + off, v, n);
}

#define PUT(off, type, val) do { type __v = (val); put(off, &__v, sizeof(__v)); } while (0)

static void bz_setup(void)
{
	mem_setup();
	make_bzimage();
}

static void read_params(struct boot_params *bp)
{
	ck_assert_int_eq(guest_mem_read(&mem, LAYOUT_ZERO_PAGE, bp, sizeof(*bp)), 0);
}

START_TEST(bzimage_valid)
{
	struct boot_config cfg = default_cfg(BOOT_AUTO);
	static const uint8_t initrd[10000] = { 1, 2, 3, [9999] = 0x77 };
	struct boot_params bp;
	struct boot_entry e;
	uint64_t rd = (TEST_RAM - sizeof(initrd)) & ~0xFFFULL;
	char cmd[64];

	cfg.initrd = initrd;
	cfg.initrd_size = sizeof(initrd);
	ck_assert_int_eq(load_captured(bz, BZ_SIZE, &cfg, &e), 0);
	ck_assert_str_eq(errbuf, "");
	ck_assert_int_eq(e.mode, CPU_MODE_LONG64);
	ck_assert_int_eq(e.protocol, BOOT_LINUX64);
	ck_assert_uint_eq(e.rip, BZ_PREF + 0x200);
	ck_assert_uint_eq(e.rsi, LAYOUT_ZERO_PAGE);
	ck_assert_uint_eq(e.cr3, LAYOUT_PML4);
	ck_assert_uint_eq(e.code_sel, 0x10);
	ck_assert_uint_eq(e.data_sel, 0x18);
	ck_assert_uint_eq(e.kernel_start, BZ_PREF);
	ck_assert_uint_eq(e.kernel_end, BZ_PREF + BZ_INIT);
	ck_assert_uint_eq(e.initrd_start, rd);
	check_gdt(&e);
	/* The protected-mode code, and nothing of the setup code, at 16 MiB. */
	ck_assert_mem_eq(guest_mem_ptr(&mem, BZ_PREF, BZ_PM), bz + BZ_SETUP, BZ_PM);
	read_params(&bp);
	ck_assert_uint_eq(bp.hdr.boot_flag, 0xAA55);
	ck_assert_uint_eq(bp.hdr.header, 0x53726448);
	ck_assert_uint_eq(bp.hdr.version, 0x020F);
	ck_assert_uint_eq(bp.hdr.init_size, BZ_INIT);
	ck_assert_uint_eq(bp.hdr.type_of_loader, 0xFF);
	ck_assert_uint_eq(bp.hdr.code32_start, BZ_PREF);
	ck_assert_uint_eq(bp.hdr.cmd_line_ptr, LAYOUT_CMDLINE);
	ck_assert_uint_eq(bp.ext_cmd_line_ptr, 0);
	ck_assert_uint_eq(bp.hdr.ramdisk_image, rd);
	ck_assert_uint_eq(bp.hdr.ramdisk_size, sizeof(initrd));
	ck_assert_uint_eq(bp.ext_ramdisk_image, 0);
	ck_assert_uint_eq(bp.acpi_rsdp_addr, TEST_RSDP);
	ck_assert_uint_eq(bp.sentinel, 0);
	ck_assert_uint_eq(bp.hdr.setup_data, 0);
	ck_assert_mem_eq(guest_mem_ptr(&mem, rd, sizeof(initrd)), initrd, sizeof(initrd));
	ck_assert_int_eq(guest_mem_read(&mem, LAYOUT_CMDLINE, cmd, sizeof(cmd)), 0);
	ck_assert_str_eq(cmd, "console=ttyS0 quiet");
	/* e820: low RAM, legacy area (holding the ACPI tables), RAM from 1 MiB. */
	ck_assert_uint_eq(bp.e820_entries, 3);
	ck_assert_uint_eq(bp.e820_table[0].addr, 0);
	ck_assert_uint_eq(bp.e820_table[0].size, LAYOUT_EBDA_START);
	ck_assert_uint_eq(bp.e820_table[0].type, E820_RAM);
	ck_assert_uint_eq(bp.e820_table[1].addr, LAYOUT_EBDA_START);
	ck_assert_uint_eq(bp.e820_table[1].type, E820_RESERVED);
	ck_assert_uint_eq(bp.e820_table[2].addr, MiB);
	ck_assert_uint_eq(bp.e820_table[2].size, TEST_RAM - MiB);
	ck_assert_uint_eq(bp.e820_table[2].type, E820_RAM);
	/* The reset vector (reserved area) pulses the i8042 reset line. */
	ck_assert_mem_eq(guest_mem_ptr(&mem, LAYOUT_RESET_VECTOR, 4), "\xb0\xfe\xe6\x64", 4);
	ck_assert_uint_le(LAYOUT_ACPI_START + LAYOUT_ACPI_SIZE, LAYOUT_RESET_VECTOR);
}
END_TEST

START_TEST(bzimage_page_tables)
{
	struct boot_config cfg = default_cfg(BOOT_LINUX64);
	struct boot_entry e;

	ck_assert_int_eq(load_captured(bz, BZ_SIZE, &cfg, &e), 0);
	ck_assert_uint_eq(rd64(LAYOUT_PML4), LAYOUT_PDPT | 3);
	ck_assert_uint_eq(rd64(LAYOUT_PML4 + 8), 0);
	for (unsigned i = 0; i < 4; i++)
		ck_assert_uint_eq(rd64(LAYOUT_PDPT + 8 * i), (LAYOUT_PD + 4096 * i) | 3);
	ck_assert_uint_eq(rd64(LAYOUT_PDPT + 32), 0);
	ck_assert_uint_eq(rd64(LAYOUT_PD), 0x83);
	ck_assert_uint_eq(rd64(LAYOUT_PD + 8), 2 * MiB | 0x83);
	ck_assert_uint_eq(rd64(LAYOUT_PD + 3 * 4096 + 511 * 8), (4 * GiB - 2 * MiB) | 0x83);
}
END_TEST

/* setup_sects 0 means 4; no pref_address means 1 MiB, run from 2 MiB. */
START_TEST(bzimage_sects0_no_pref)
{
	struct boot_config cfg = default_cfg(BOOT_AUTO);
	struct boot_entry e;

	bz[0x1F1] = 0;
	PUT(HDR(pref_address), uint64_t, 0);
	ck_assert_int_eq(load_captured(bz, BZ_SIZE, &cfg, &e), 0);
	ck_assert_uint_eq(e.rip, MiB + 0x200);
	ck_assert_uint_eq(e.kernel_end, 2 * MiB + BZ_INIT);
	ck_assert_mem_eq(guest_mem_ptr(&mem, MiB, BZ_PM), bz + BZ_SETUP, BZ_PM);
}
END_TEST

START_TEST(bzimage_no_initrd_no_cmdline)
{
	struct boot_config cfg = default_cfg(BOOT_AUTO);
	struct boot_params bp;
	struct boot_entry e;

	cfg.cmdline = NULL;
	ck_assert_int_eq(load_captured(bz, BZ_SIZE, &cfg, &e), 0);
	read_params(&bp);
	ck_assert_uint_eq(bp.hdr.ramdisk_image, 0);
	ck_assert_uint_eq(bp.hdr.ramdisk_size, 0);
	ck_assert_uint_eq(e.initrd_start, 0);
	ck_assert_uint_eq(*(char *)guest_mem_ptr(&mem, LAYOUT_CMDLINE, 1), 0);
}
END_TEST

/* initrd_addr_max lower than RAM end: the initrd ends below it. */
START_TEST(bzimage_initrd_addr_max)
{
	struct boot_config cfg = default_cfg(BOOT_AUTO);
	static const uint8_t initrd[8192];
	struct boot_entry e;

	PUT(HDR(initrd_addr_max), uint32_t, 40 * MiB - 1);
	cfg.initrd = initrd;
	cfg.initrd_size = sizeof(initrd);
	ck_assert_int_eq(load_captured(bz, BZ_SIZE, &cfg, &e), 0);
	ck_assert_uint_eq(e.initrd_start, 40 * MiB - sizeof(initrd));
	/* ...and one that leaves no room above the kernel is refused. */
	PUT(HDR(initrd_addr_max), uint32_t, BZ_PREF + BZ_INIT + 4096 - 1);
	ck_load_fails(bz, BZ_SIZE, &cfg, "initrd of 1 MiB does not fit below");
}
END_TEST

START_TEST(bzimage_initrd_too_big)
{
	struct boot_config cfg = default_cfg(BOOT_AUTO);
	static const uint8_t initrd[16];

	/* Claimed size only: the loader must refuse before reading it. */
	cfg.initrd = initrd;
	cfg.initrd_size = 3000 * MiB;
	ck_load_fails(bz, BZ_SIZE, &cfg, "initrd of 3000 MiB does not fit below");
	cfg.initrd_size = TEST_RAM - 20 * MiB;
	ck_load_fails(bz, BZ_SIZE, &cfg, "does not fit below");
}
END_TEST

START_TEST(bzimage_cmdline_too_long)
{
	struct boot_config cfg = default_cfg(BOOT_AUTO);
	char *line = malloc(3000);
	struct boot_entry e;

	memset(line, 'a', 2999);
	line[2999] = 0;
	cfg.cmdline = line;
	ck_load_fails(bz, BZ_SIZE, &cfg, "command line is 2999 bytes");
	line[2048] = 0;
	ck_load_fails(bz, BZ_SIZE, &cfg, "at most 2047");
	line[2047] = 0;
	ck_assert_int_eq(load_captured(bz, BZ_SIZE, &cfg, &e), 0);
	free(line);
}
END_TEST

START_TEST(bzimage_bad_fields)
{
	struct boot_config cfg = default_cfg(BOOT_AUTO);

	PUT(0x1FE, uint16_t, 0xAA56);
	ck_load_fails(bz, BZ_SIZE, &cfg, "kernel: not a bzImage or ELF (bad magic)");
	make_bzimage();
	bz[0x202] = 'h';
	ck_load_fails(bz, BZ_SIZE, &cfg, "bad magic");
	make_bzimage();
	PUT(HDR(version), uint16_t, 0x020B);
	ck_load_fails(bz, BZ_SIZE, &cfg, "boot protocol 2.11 is too old");
	make_bzimage();
	PUT(HDR(xloadflags), uint16_t, XLF_CAN_BE_LOADED_ABOVE_4G);
	ck_load_fails(bz, BZ_SIZE, &cfg, "XLF_KERNEL_64");
	make_bzimage();
	bz[HDR(loadflags)] = 0;
	ck_load_fails(bz, BZ_SIZE, &cfg, "zImage");
	make_bzimage();
	bz[0x201] = 0x10;       /* header "ends" before init_size */
	ck_load_fails(bz, BZ_SIZE, &cfg, "truncated setup header");
	bz[0x201] = 0x00;
	ck_load_fails(bz, BZ_SIZE, &cfg, "truncated setup header");
	make_bzimage();
	bz[0x1F1] = 255;        /* 128 KiB of setup code in a 14 KiB file */
	ck_load_fails(bz, BZ_SIZE, &cfg, "truncated bzImage");
	make_bzimage();
	PUT(HDR(syssize), uint32_t, BZ_PM / 16 + 1);
	ck_load_fails(bz, BZ_SIZE, &cfg, "truncated bzImage");
	make_bzimage();
	PUT(HDR(kernel_alignment), uint32_t, 0x300000);
	ck_load_fails(bz, BZ_SIZE, &cfg, "kernel_alignment");
	PUT(HDR(kernel_alignment), uint32_t, 0);
	ck_load_fails(bz, BZ_SIZE, &cfg, "kernel_alignment");
}
END_TEST

START_TEST(bzimage_does_not_fit)
{
	struct boot_config cfg = default_cfg(BOOT_AUTO);

	PUT(HDR(init_size), uint32_t, 0x80000000);
	ck_load_fails(bz, BZ_SIZE, &cfg, "kernel: needs 2048 MiB of RAM");
	make_bzimage();
	/* A pref_address near 2^64 must not wrap into a "fitting" range. */
	PUT(HDR(pref_address), uint64_t, UINT64_MAX - 0xFFF);
	ck_load_fails(bz, BZ_SIZE, &cfg, "kernel: needs");
	make_bzimage();
	PUT(HDR(pref_address), uint64_t, TEST_RAM - MiB);
	ck_load_fails(bz, BZ_SIZE, &cfg, "kernel: needs");
}
END_TEST

/* With RAM above the hole: the initrd stays below the limits, e820 lists 4 GiB+. */
START_TEST(bzimage_big_ram)
{
	struct boot_config cfg = default_cfg(BOOT_AUTO);
	static const uint8_t initrd[4096 * 3 + 1];
	struct boot_params bp;
	struct boot_entry e;

	mem_teardown();
	ck_assert_int_eq(guest_mem_init(&mem, 5 * GiB), 0);
	cfg.initrd = initrd;
	cfg.initrd_size = sizeof(initrd);
	ck_assert_int_eq(load_captured(bz, BZ_SIZE, &cfg, &e), 0);
	/* initrd_addr_max 0x7FFFFFFF keeps it below 2 GiB... */
	ck_assert_uint_eq(e.initrd_start, 2 * GiB - 4 * 4096);
	/* ...and without that limit, the hole does. */
	PUT(HDR(initrd_addr_max), uint32_t, 0xFFFFFFFF);
	ck_assert_int_eq(load_captured(bz, BZ_SIZE, &cfg, &e), 0);
	ck_assert_uint_eq(e.initrd_start, 3 * GiB - 4 * 4096);
	read_params(&bp);
	ck_assert_uint_eq(bp.e820_entries, 4);
	ck_assert_uint_eq(bp.e820_table[2].size, 3 * GiB - MiB);
	ck_assert_uint_eq(bp.e820_table[3].addr, 4 * GiB);
	ck_assert_uint_eq(bp.e820_table[3].size, 2 * GiB);
}
END_TEST

START_TEST(bzimage_pvh_refused)
{
	struct boot_config cfg = default_cfg(BOOT_PVH);

	ck_load_fails(bz, BZ_SIZE, &cfg, "PVH boot needs an ELF");
}
END_TEST

/* Every prefix of the image is refused with one line, and never read past. */
START_TEST(bzimage_every_truncation)
{
	struct boot_config cfg = default_cfg(BOOT_AUTO);

	for (size_t len = 0; len < BZ_SIZE; len += len < 0x300 ? 1 : 61)
		ck_load_fails(bz, len, &cfg, "kernel");
}
END_TEST

/* Any value in any header byte: an answer, never a crash. */
START_TEST(bzimage_header_fuzz)
{
	struct boot_config cfg = default_cfg(BOOT_AUTO);
	static const uint8_t vals[] = { 0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF };
	struct boot_entry e;

	for (unsigned off = 0x1F1; off < 0x270; off++) {
		for (unsigned v = 0; v < sizeof(vals); v++) {
			make_bzimage();
			bz[off] = vals[v];
			if (load_captured(bz, BZ_SIZE, &cfg, &e) < 0)
				ck_assert_uint_eq(count_lines(errbuf), 1);
		}
	}
}
END_TEST

START_TEST(not_a_kernel)
{
	struct boot_config cfg = default_cfg(BOOT_AUTO);
	static const uint8_t junk[4096] = { 'M', 'Z' };

	ck_load_fails(junk, sizeof(junk), &cfg, "kernel: not a bzImage or ELF (bad magic)");
	ck_load_fails(junk, 1, &cfg, "bad magic");
	ck_load_fails(junk, 0, &cfg, "kernel: empty image");
	cfg.protocol = (enum boot_protocol)7;
	ck_load_fails(bz, BZ_SIZE, &cfg, "unknown boot protocol");
}
END_TEST

/* --- read_file ------------------------------------------------------------ */

static int read_captured(const char *path, size_t max, uint8_t **buf, size_t *size)
{
	int fd = memfd_create("stderr", 0), saved = dup(2), ret;
	ssize_t n;

	fflush(stderr);
	dup2(fd, 2);
	ret = read_file(path, max, buf, size);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, errbuf, sizeof(errbuf) - 1, 0);
	errbuf[n > 0 ? n : 0] = 0;
	close(fd);
	return ret;
}

START_TEST(read_file_cases)
{
	char dir[] = "/tmp/minivmm-test-XXXXXX", path[64];
	uint8_t *buf = (uint8_t *)1;
	size_t size = 1;
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/k", dir);
	ck_assert_int_eq(read_captured(path, 100, &buf, &size), -1);
	ck_assert_ptr_null(buf);
	ck_assert_ptr_nonnull(strstr(errbuf, "cannot open"));
	ck_assert_ptr_nonnull(strstr(errbuf, "No such file"));
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_eq(read_captured(path, 100, &buf, &size), -1);
	ck_assert_ptr_nonnull(strstr(errbuf, "is empty"));
	ck_assert_int_eq(write(fd, "hello", 5), 5);
	close(fd);
	ck_assert_int_eq(read_captured(path, 4, &buf, &size), -1);
	ck_assert_ptr_nonnull(strstr(errbuf, "is 5 bytes; the limit is 4 bytes"));
	ck_assert_int_eq(read_captured(path, 5, &buf, &size), 0);
	ck_assert_uint_eq(size, 5);
	ck_assert_mem_eq(buf, "hello", 5);
	free(buf);
	ck_assert_int_eq(read_captured(dir, 100, &buf, &size), -1);
	ck_assert_ptr_nonnull(strstr(errbuf, "not a regular file"));
	ck_assert_uint_eq(count_lines(errbuf), 1);
	unlink(path);
	rmdir(dir);
}
END_TEST

/* --- Debian's kernels, when scripts/fetch-kernels has fetched them -------- */

static bool real_kernel(const char *flavour, const char *name, uint8_t **buf, size_t *size)
{
	const char *cache = getenv("MINIVMM_CACHE"), *home = getenv("HOME");
	char path[512];

	if (cache)
		snprintf(path, sizeof(path), "%s/kernels/%s/%s", cache, flavour, name);
	else
		snprintf(path, sizeof(path), "%s/.cache/minivmm/kernels/%s/%s",
			 home ? home : "/", flavour, name);
	if (access(path, R_OK) < 0)
		return false;   /* optional: the integration tests insist on them */
	return read_file(path, 256 * MiB, buf, size) == 0;
}

START_TEST(debian_kernels)
{
	static const char *const flavours[] = { "cloud", "generic" };
	struct boot_config cfg = default_cfg(BOOT_AUTO);
	const char *flavour = flavours[_i];
	struct boot_entry e;
	uint8_t *img;
	size_t size;

	mem_teardown();
	ck_assert_int_eq(guest_mem_init(&mem, 256 * MiB), 0);
	if (real_kernel(flavour, "vmlinuz", &img, &size)) {
		ck_assert_int_eq(load_captured(img, size, &cfg, &e), 0);
		ck_assert_uint_eq(e.rip, 0x1000000 + 0x200);
		free(img);
	}
	if (real_kernel(flavour, "vmlinux", &img, &size)) {
		ck_assert_int_eq(load_captured(img, size, &cfg, &e), 0);
		ck_assert_int_eq(e.protocol, BOOT_PVH);
		ck_assert(e.rip > 0x1000000 && e.rip < e.kernel_end);
		cfg.protocol = BOOT_LINUX64;
		ck_assert_int_eq(load_captured(img, size, &cfg, &e), 0);
		ck_assert_uint_eq(e.rip, 0x1000000);   /* startup_64 */
		free(img);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("boot");
	TCase *tc = tcase_create("bzimage");
	TCase *misc = tcase_create("misc");

	tcase_add_checked_fixture(tc, bz_setup, mem_teardown);
	tcase_add_test(tc, bzimage_valid);
	tcase_add_test(tc, bzimage_page_tables);
	tcase_add_test(tc, bzimage_sects0_no_pref);
	tcase_add_test(tc, bzimage_no_initrd_no_cmdline);
	tcase_add_test(tc, bzimage_initrd_addr_max);
	tcase_add_test(tc, bzimage_initrd_too_big);
	tcase_add_test(tc, bzimage_cmdline_too_long);
	tcase_add_test(tc, bzimage_bad_fields);
	tcase_add_test(tc, bzimage_does_not_fit);
	tcase_add_test(tc, bzimage_big_ram);
	tcase_add_test(tc, bzimage_pvh_refused);
	tcase_add_test(tc, bzimage_every_truncation);
	tcase_add_test(tc, bzimage_header_fuzz);
	tcase_add_test(tc, not_a_kernel);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(misc, bz_setup, mem_teardown);
	tcase_set_timeout(misc, 60);
	tcase_add_test(misc, read_file_cases);
	tcase_add_loop_test(misc, debian_kernels, 0, 2);
	suite_add_tcase(s, misc);
	return run_suite(s);
}
