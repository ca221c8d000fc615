// SPDX-License-Identifier: MIT
/*
 * ELF kernels: PVH entry (hvm_start_info, memmap, modules) and a vmlinux
 * through the Linux 64-bit protocol, then every way the ELF can lie.
 */
#include <asm/bootparam.h>
#include <elf.h>

#include "arch/x86/elf.h"
#include "boot_harness.h"

#define TEXT_PA   0x100000ULL
#define DATA_PA   0x200000ULL
#define VBASE     0xffffffff80000000ULL
#define NOTE_OFF  0x200
#define TEXT_OFF  0x1000
#define DATA_OFF  0x2000
#define DATA_FILE 0x800
#define DATA_MEM  0x3000
#define ELF_SIZE  (DATA_OFF + DATA_FILE)
#define PVH_ENTRY (TEXT_PA + 0x10)
#define START_INFO_MEMMAP (LAYOUT_PVH_START_INFO + 56)

static uint8_t elf[ELF_SIZE] __attribute__((aligned(8)));
static Elf64_Ehdr *eh = (Elf64_Ehdr *)elf;
static Elf64_Phdr *ph = (Elf64_Phdr *)(elf + sizeof(Elf64_Ehdr));

static unsigned put_note(unsigned off, const char *name, uint32_t type,
			 const void *desc, uint32_t descsz)
{
	Elf64_Nhdr nh = { .n_namesz = (uint32_t)strlen(name) + 1, .n_descsz = descsz,
			  .n_type = type };

	memcpy(elf + off, &nh, sizeof(nh));
	off += sizeof(nh);
	memcpy(elf + off, name, nh.n_namesz);
	off += (nh.n_namesz + 3) & ~3U;
	memcpy(elf + off, desc, descsz);
	return off + ((descsz + 3) & ~3U);
}

/* Two PT_LOADs (text; data with bss) and, optionally, a PT_NOTE holding a
 * GNU build-id-like note and then the PVH entry note. */
static void make_elf(bool pvh, uint32_t descsz)
{
	uint64_t entry = PVH_ENTRY;
	unsigned end = NOTE_OFF;

	memset(elf, 0, sizeof(elf));
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = VBASE + TEXT_PA + 0x40;   /* virtual, like a linked vmlinux */
	eh->e_phoff = sizeof(Elf64_Ehdr);
	eh->e_ehsize = sizeof(Elf64_Ehdr);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = pvh ? 3 : 2;
	ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = TEXT_OFF, .p_paddr = TEXT_PA,
			      .p_vaddr = VBASE + TEXT_PA, .p_filesz = 0x1000,
			      .p_memsz = 0x1000, .p_align = 0x200000 };
	ph[1] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = DATA_OFF, .p_paddr = DATA_PA,
			      .p_vaddr = VBASE + DATA_PA, .p_filesz = DATA_FILE,
			      .p_memsz = DATA_MEM, .p_align = 0x1000 };
	if (pvh) {
		end = put_note(end, "GNU", 3, "buildid", 7);
		end = put_note(end, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, &entry, descsz);
		ph[2] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = NOTE_OFF,
				      .p_filesz = end - NOTE_OFF, .p_align = 4 };
	}
	for (unsigned i = TEXT_OFF; i < ELF_SIZE; i++)
		elf[i] = (uint8_t)(i * 13 + 1);
}

static void elf_setup(void)
{
	mem_setup();
	make_elf(true, 4);
	/* Stale bytes where the bss goes: the loader must clear them. */
	memset(guest_mem_ptr(&mem, DATA_PA, DATA_MEM), 0xFF, DATA_MEM);
}

static void check_segments(void)
{
	uint8_t zero[DATA_MEM - DATA_FILE] = { 0 };

	ck_assert_mem_eq(guest_mem_ptr(&mem, TEXT_PA, 0x1000), elf + TEXT_OFF, 0x1000);
	ck_assert_mem_eq(guest_mem_ptr(&mem, DATA_PA, DATA_FILE), elf + DATA_OFF, DATA_FILE);
	ck_assert_mem_eq(guest_mem_ptr(&mem, DATA_PA + DATA_FILE, sizeof(zero)), zero,
			 sizeof(zero));
}

START_TEST(pvh_valid)
{
	struct boot_config cfg = default_cfg(BOOT_AUTO);
	static const uint8_t initrd[5000] = { 9, 8, 7 };
	const uint64_t si = LAYOUT_PVH_START_INFO, mm = START_INFO_MEMMAP;
	struct boot_entry e;
	uint64_t mod;

	cfg.initrd = initrd;
	cfg.initrd_size = sizeof(initrd);
	ck_assert_int_eq(load_captured(elf, ELF_SIZE, &cfg, &e), 0);
	ck_assert_str_eq(errbuf, "");
	ck_assert_int_eq(e.mode, CPU_MODE_PROT32);
	ck_assert_int_eq(e.protocol, BOOT_PVH);
	ck_assert_uint_eq(e.rip, PVH_ENTRY);
	ck_assert_uint_eq(e.rbx, si);
	ck_assert_uint_eq(e.code_sel, 0x08);
	ck_assert_uint_eq(e.data_sel, 0x18);
	ck_assert_uint_eq(e.kernel_start, TEXT_PA);
	ck_assert_uint_eq(e.kernel_end, DATA_PA + DATA_MEM);
	ck_assert_uint_eq(e.initrd_start, (TEST_RAM - sizeof(initrd)) & ~0xFFFULL);
	check_gdt(&e);
	check_segments();
	ck_assert_uint_eq(rd32(si), 0x336ec578);
	ck_assert_uint_eq(rd32(si + 4), 1);                 /* version */
	ck_assert_uint_eq(rd32(si + 8), 0);                 /* flags */
	ck_assert_uint_eq(rd32(si + 12), 1);                /* nr_modules */
	mod = rd64(si + 16);
	ck_assert_uint_eq(rd64(si + 24), LAYOUT_CMDLINE);
	ck_assert_uint_eq(rd64(si + 32), TEST_RSDP);
	ck_assert_uint_eq(rd64(si + 40), mm);
	ck_assert_uint_eq(rd32(si + 48), 3);                /* memmap_entries */
	ck_assert_str_eq(guest_mem_ptr(&mem, LAYOUT_CMDLINE, 20), "console=ttyS0 quiet");
	/* memmap: {addr, size, type, reserved}, 24 bytes each */
	ck_assert_uint_eq(rd64(mm), 0);
	ck_assert_uint_eq(rd64(mm + 8), LAYOUT_EBDA_START);
	ck_assert_uint_eq(rd32(mm + 16), E820_RAM);
	ck_assert_uint_eq(rd64(mm + 24), LAYOUT_EBDA_START);
	ck_assert_uint_eq(rd64(mm + 32), MiB - LAYOUT_EBDA_START);
	ck_assert_uint_eq(rd32(mm + 40), E820_RESERVED);
	ck_assert_uint_eq(rd64(mm + 48), MiB);
	ck_assert_uint_eq(rd64(mm + 56), TEST_RAM - MiB);
	ck_assert_uint_eq(rd32(mm + 64), E820_RAM);
	/* modlist: {paddr, size, cmdline_paddr, reserved} */
	ck_assert(mod > mm && mod + 32 <= LAYOUT_ZERO_PAGE);
	ck_assert_uint_eq(rd64(mod), e.initrd_start);
	ck_assert_uint_eq(rd64(mod + 8), sizeof(initrd));
	ck_assert_uint_eq(rd64(mod + 16), 0);
	ck_assert_mem_eq(guest_mem_ptr(&mem, e.initrd_start, sizeof(initrd)), initrd,
			 sizeof(initrd));
}
END_TEST

START_TEST(pvh_no_initrd_desc8)
{
	struct boot_config cfg = default_cfg(BOOT_PVH);
	struct boot_entry e;

	make_elf(true, 8);
	ck_assert_int_eq(load_captured(elf, ELF_SIZE, &cfg, &e), 0);
	ck_assert_uint_eq(e.rip, PVH_ENTRY);
	ck_assert_uint_eq(rd32(LAYOUT_PVH_START_INFO + 12), 0);
	ck_assert_uint_eq(rd64(LAYOUT_PVH_START_INFO + 16), 0);
	ck_assert_uint_eq(e.initrd_start, 0);
}
END_TEST

/* A PVH-noted ELF booted through the 64-bit protocol, as a vmlinux. */
START_TEST(vmlinux_linux64)
{
	struct boot_config cfg = default_cfg(BOOT_LINUX64);
	struct boot_params bp;
	struct boot_entry e;

	ck_assert_int_eq(load_captured(elf, ELF_SIZE, &cfg, &e), 0);
	ck_assert_int_eq(e.mode, CPU_MODE_LONG64);
	ck_assert_int_eq(e.protocol, BOOT_LINUX64);
	ck_assert_uint_eq(e.rip, TEXT_PA + 0x40);   /* e_entry made physical */
	ck_assert_uint_eq(e.rsi, LAYOUT_ZERO_PAGE);
	ck_assert_uint_eq(e.cr3, LAYOUT_PML4);
	ck_assert_uint_eq(e.code_sel, 0x10);
	check_gdt(&e);
	check_segments();
	ck_assert_uint_eq(rd64(LAYOUT_PML4), LAYOUT_PDPT | 3);
	ck_assert_int_eq(guest_mem_read(&mem, LAYOUT_ZERO_PAGE, &bp, sizeof(bp)), 0);
	ck_assert_uint_eq(bp.hdr.boot_flag, 0xAA55);
	ck_assert_uint_eq(bp.hdr.header, 0x53726448);
	ck_assert_uint_eq(bp.hdr.version, 0x020F);
	ck_assert_uint_eq(bp.hdr.type_of_loader, 0xFF);
	ck_assert_uint_eq(bp.hdr.loadflags, LOADED_HIGH);
	ck_assert_uint_eq(bp.hdr.kernel_alignment, 0x200000);
	ck_assert_uint_eq(bp.hdr.cmd_line_ptr, LAYOUT_CMDLINE);
	ck_assert_uint_eq(bp.hdr.ramdisk_image, 0);
	ck_assert_uint_eq(bp.acpi_rsdp_addr, TEST_RSDP);
	ck_assert_uint_eq(bp.e820_entries, 3);
	ck_assert_uint_eq(bp.e820_table[1].type, E820_RESERVED);
	ck_assert_uint_eq(bp.e820_table[2].size, TEST_RAM - MiB);
}
END_TEST

START_TEST(vmlinux_without_note)
{
	struct boot_config cfg = default_cfg(BOOT_AUTO);
	struct boot_entry e;

	make_elf(false, 4);
	eh->e_entry = TEXT_PA + 0x80;           /* already physical */
	ck_assert_int_eq(load_captured(elf, ELF_SIZE, &cfg, &e), 0);
	ck_assert_int_eq(e.protocol, BOOT_LINUX64);
	ck_assert_uint_eq(e.rip, TEXT_PA + 0x80);
	cfg.protocol = BOOT_PVH;
	ck_load_fails(elf, ELF_SIZE, &cfg, "PVH boot needs an ELF with a PVH entry note");
	/* An entry outside every segment only matters to linux64. */
	eh->e_entry = 0x5000000;
	cfg.protocol = BOOT_AUTO;
	ck_load_fails(elf, ELF_SIZE, &cfg, "entry point 0x5000000 is not inside");
	make_elf(true, 4);
	eh->e_entry = 0x5000000;
	ck_assert_int_eq(load_captured(elf, ELF_SIZE, &cfg, &e), 0);
}
END_TEST

/* Each corruption, applied to a fresh image, with the words it must cause. */
struct corruption {
	const char *name, *msg;
	void (*apply)(void);
};

static void c_class(void) { eh->e_ident[EI_CLASS] = ELFCLASS32; }
static void c_endian(void) { eh->e_ident[EI_DATA] = ELFDATA2MSB; }
static void c_machine(void) { eh->e_machine = EM_386; }
static void c_type(void) { eh->e_type = ET_REL; }
static void c_phentsize(void) { eh->e_phentsize = 32; }
static void c_phnum0(void) { eh->e_phnum = 0; }
static void c_phnum_big(void) { eh->e_phnum = 0xFFFF; }
static void c_phoff(void) { eh->e_phoff = ELF_SIZE; }
static void c_phoff_wrap(void) { eh->e_phoff = UINT64_MAX - 8; }
static void c_phoff_partial(void) { eh->e_phoff = ELF_SIZE - sizeof(Elf64_Phdr); }
static void c_offset(void) { ph[1].p_offset = ELF_SIZE - 8; }
static void c_offset_wrap(void) { ph[1].p_offset = UINT64_MAX - 0x10; }
static void c_filesz_wrap(void) { ph[1].p_filesz = UINT64_MAX; ph[1].p_memsz = UINT64_MAX; }
static void c_filesz(void) { ph[1].p_memsz = DATA_FILE - 1; }
static void c_beyond_ram(void) { ph[1].p_paddr = TEST_RAM - 0x1000; }
static void c_paddr_wrap(void) { ph[1].p_paddr = UINT64_MAX - 0x100; }
static void c_memsz_huge(void) { ph[1].p_memsz = UINT64_MAX - DATA_PA + 1; }
static void c_low(void) { ph[0].p_paddr = 0x7000; }
static void c_high(void) { ph[0].p_paddr = 5 * GiB; }
static void c_no_load(void) { ph[0].p_type = PT_NULL; ph[1].p_type = PT_NULL; }
static void c_note_offset(void) { ph[2].p_offset = ELF_SIZE - 4; }
static void c_note_cut(void) { ph[2].p_filesz -= 2; }
static void c_note_hdr_cut(void) { ph[2].p_filesz = 20 + 8; }
static void c_note_namesz(void) { ((Elf64_Nhdr *)(elf + NOTE_OFF))->n_namesz = 0xFFFFFFFF; }
static void c_note_descsz(void) { ((Elf64_Nhdr *)(elf + NOTE_OFF))->n_descsz = 0xFFFFFFFD; }
static void c_pvh_desc2(void) { ((Elf64_Nhdr *)(elf + NOTE_OFF + 24))->n_descsz = 2; }
static void c_pvh_zero(void) { memset(elf + NOTE_OFF + 24 + 16, 0, 4); }
static void c_pvh_outside(void)
{
	uint32_t v = 0x4000000;

	memcpy(elf + NOTE_OFF + 24 + 16, &v, 4);
}

static const struct corruption corruptions[] = {
	{ "class", "not a 64-bit little-endian ELF", c_class },
	{ "endian", "not a 64-bit little-endian ELF", c_endian },
	{ "machine", "not x86-64", c_machine },
	{ "type", "not an executable", c_type },
	{ "phentsize", "program header size 32", c_phentsize },
	{ "phnum0", "0 program headers", c_phnum0 },
	{ "phnum_big", "65535 program headers", c_phnum_big },
	{ "phoff", "truncated ELF program header table", c_phoff },
	{ "phoff_wrap", "truncated ELF program header table", c_phoff_wrap },
	{ "phoff_partial", "truncated ELF program header table", c_phoff_partial },
	{ "offset", "beyond the end of the file", c_offset },
	{ "offset_wrap", "beyond the end of the file", c_offset_wrap },
	{ "filesz_wrap", "beyond the end of the file", c_filesz_wrap },
	{ "filesz>memsz", "p_filesz 0x800 > p_memsz 0x7ff", c_filesz },
	{ "beyond_ram", "does not fit in guest RAM", c_beyond_ram },
	{ "paddr_wrap", "lies above 4 GiB", c_paddr_wrap },
	{ "memsz_huge", "does not fit in guest RAM", c_memsz_huge },
	{ "low", "below 1 MiB", c_low },
	{ "high", "above 4 GiB", c_high },
	{ "no_load", "no loadable segment", c_no_load },
	{ "note_offset", "note segment 2", c_note_offset },
	{ "note_cut", "truncated ELF note", c_note_cut },
	{ "note_hdr_cut", "truncated ELF note", c_note_hdr_cut },
	{ "note_namesz", "truncated ELF note", c_note_namesz },
	{ "note_descsz", "truncated ELF note", c_note_descsz },
	{ "pvh_desc2", "2-byte descriptor", c_pvh_desc2 },
	{ "pvh_zero", "not a 32-bit address", c_pvh_zero },
	{ "pvh_outside", "outside the loaded segments", c_pvh_outside },
};

START_TEST(elf_corrupted)
{
	const struct corruption *c = &corruptions[_i];
	struct boot_config cfg = default_cfg(BOOT_AUTO);
	struct boot_entry e;

	make_elf(true, 4);
	c->apply();
	ck_assert_msg(load_captured(elf, ELF_SIZE, &cfg, &e) == -1, "%s loaded", c->name);
	ck_assert_msg(count_lines(errbuf) == 1, "%s: want one line: %s", c->name, errbuf);
	ck_assert_msg(strstr(errbuf, c->msg), "%s: want '%s' in: %s", c->name, c->msg, errbuf);
	cfg.protocol = BOOT_LINUX64;
	ck_assert_int_eq(load_captured(elf, ELF_SIZE, &cfg, &e), -1);
}
END_TEST

START_TEST(elf_every_truncation)
{
	struct boot_config cfg = default_cfg(BOOT_AUTO);

	for (size_t len = 0; len < ELF_SIZE; len += len < 0x300 ? 1 : 37)
		ck_load_fails(elf, len, &cfg, "");
}
END_TEST

START_TEST(elf_header_fuzz)
{
	static const uint8_t vals[] = { 0x00, 0x01, 0x40, 0x80, 0xFE, 0xFF };
	struct boot_config cfg = default_cfg(BOOT_AUTO);
	struct boot_entry e;

	for (unsigned off = 0; off < NOTE_OFF + 0x40; off++) {
		for (unsigned v = 0; v < sizeof(vals); v++) {
			make_elf(true, 4);
			elf[off] = vals[v];
			if (load_captured(elf, ELF_SIZE, &cfg, &e) < 0)
				ck_assert_uint_eq(count_lines(errbuf), 1);
		}
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("boot_elf");
	TCase *tc = tcase_create("elf");

	tcase_add_checked_fixture(tc, elf_setup, mem_teardown);
	tcase_add_test(tc, pvh_valid);
	tcase_add_test(tc, pvh_no_initrd_desc8);
	tcase_add_test(tc, vmlinux_linux64);
	tcase_add_test(tc, vmlinux_without_note);
	tcase_add_loop_test(tc, elf_corrupted, 0, sizeof(corruptions) / sizeof(corruptions[0]));
	tcase_add_test(tc, elf_every_truncation);
	tcase_add_test(tc, elf_header_fuzz);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
