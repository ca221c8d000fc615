// SPDX-License-Identifier: MIT
/*
 * ELF64 kernel images. Parsing and loading are separate so that nothing is
 * written to guest RAM until the whole image has been checked: a rejected
 * image leaves no half-loaded kernel behind.
 *
 * Bounds are checked as "offset <= size && length <= size - offset", which
 * cannot overflow, and program headers and notes are memcpy'd out of the
 * image rather than cast in place: the image buffer is untrusted and its
 * offsets need not be aligned.
 */
#include <elf.h>
#include <string.h>

#include "arch/x86/elf.h"
#include "arch/x86/layout.h"
#include "vmm/log.h"

/* More program headers than any kernel has; bounds the parsing work. */
#define ELF_MAX_PHDRS 512

static bool range_ok(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

bool elf_is_elf(const uint8_t *img, size_t size)
{
	return size >= SELFMAG && memcmp(img, ELFMAG, SELFMAG) == 0;
}

static int check_ehdr(const Elf64_Ehdr *eh, size_t size)
{
	uint64_t table;

	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB) {
		pr_err("kernel: not a 64-bit little-endian ELF");
		return -1;
	}
	if (eh->e_machine != EM_X86_64) {
		pr_err("kernel: ELF is for machine %u, not x86-64", eh->e_machine);
		return -1;
	}
	if (eh->e_type != ET_EXEC && eh->e_type != ET_DYN) {
		pr_err("kernel: ELF type %u is not an executable", eh->e_type);
		return -1;
	}
	if (eh->e_phentsize != sizeof(Elf64_Phdr)) {
		pr_err("kernel: ELF program header size %u, expected %zu",
		       eh->e_phentsize, sizeof(Elf64_Phdr));
		return -1;
	}
	if (eh->e_phnum == 0 || eh->e_phnum > ELF_MAX_PHDRS) {
		pr_err("kernel: ELF has %u program headers (1 to %u supported)",
		       eh->e_phnum, ELF_MAX_PHDRS);
		return -1;
	}
	table = (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr);
	if (!range_ok(eh->e_phoff, table, size)) {
		pr_err("kernel: truncated ELF program header table (offset 0x%llx, file %zu bytes)",
		       (unsigned long long)eh->e_phoff, size);
		return -1;
	}
	return 0;
}

static void get_phdr(const uint8_t *img, const Elf64_Ehdr *eh, unsigned i, Elf64_Phdr *ph)
{
	memcpy(ph, img + eh->e_phoff + (uint64_t)i * sizeof(*ph), sizeof(*ph));
}

static int check_load(const Elf64_Phdr *ph, unsigned i, size_t size,
		      const struct guest_mem *mem)
{
	if (!range_ok(ph->p_offset, ph->p_filesz, size)) {
		pr_err("kernel: ELF segment %u (offset 0x%llx, %llu bytes) lies beyond the end of the file",
		       i, (unsigned long long)ph->p_offset, (unsigned long long)ph->p_filesz);
		return -1;
	}
	if (ph->p_filesz > ph->p_memsz) {
		pr_err("kernel: ELF segment %u has p_filesz 0x%llx > p_memsz 0x%llx", i,
		       (unsigned long long)ph->p_filesz, (unsigned long long)ph->p_memsz);
		return -1;
	}
	if (ph->p_memsz == 0)
		return 0;
	/* Below 1 MiB live the GDT, page tables, zero page, command line and
	 * ACPI tables; a kernel there would overwrite them or be overwritten. */
	if (ph->p_paddr < LAYOUT_HIGH_MEM_START) {
		pr_err("kernel: ELF segment %u at 0x%llx lies below 1 MiB, where the boot structures live",
		       i, (unsigned long long)ph->p_paddr);
		return -1;
	}
	/* Both entries run with at most 4 GiB identity-mapped (or unpaged). */
	if (ph->p_paddr >= LAYOUT_MMIO_HOLE_END) {
		pr_err("kernel: ELF segment %u at 0x%llx lies above 4 GiB",
		       i, (unsigned long long)ph->p_paddr);
		return -1;
	}
	if (!guest_mem_ptr(mem, ph->p_paddr, ph->p_memsz)) {
		pr_err("kernel: ELF segment %u at 0x%llx (%llu bytes) does not fit in guest RAM",
		       i, (unsigned long long)ph->p_paddr, (unsigned long long)ph->p_memsz);
		return -1;
	}
	return 0;
}

static int pvh_note_desc(const uint8_t *desc, uint32_t descsz, struct elf_info *info)
{
	uint64_t v = 0;

	if (descsz != 4 && descsz != 8) {
		pr_err("kernel: PVH entry note has a %u-byte descriptor (expected 4 or 8)", descsz);
		return -1;
	}
	memcpy(&v, desc, descsz);   /* little-endian host and image */
	if (v == 0 || v >= 4 * GiB) {
		pr_err("kernel: PVH entry 0x%llx is not a 32-bit address", (unsigned long long)v);
		return -1;
	}
	info->has_pvh = true;
	info->pvh_entry = v;
	return 0;
}

static bool is_pvh_note(const Elf64_Nhdr *nh, const uint8_t *name)
{
	/* "Xen" with its NUL, as the kernel emits it; tolerate no NUL. */
	if (nh->n_type != XEN_ELFNOTE_PHYS32_ENTRY)
		return false;
	if (nh->n_namesz == 4)
		return memcmp(name, "Xen", 4) == 0;
	return nh->n_namesz == 3 && memcmp(name, "Xen", 3) == 0;
}

/* Walk the notes in [off, off + len) of the image. */
static int scan_notes(const uint8_t *img, uint64_t off, uint64_t len, uint64_t align,
		      struct elf_info *info)
{
	uint64_t pos = 0;

	while (pos < len) {
		Elf64_Nhdr nh;
		uint64_t name_off, desc_off;

		if (len - pos < sizeof(nh))
			goto truncated;
		memcpy(&nh, img + off + pos, sizeof(nh));
		name_off = pos + sizeof(nh);
		if (align_up(nh.n_namesz, align) > len - name_off)
			goto truncated;
		desc_off = name_off + align_up(nh.n_namesz, align);
		/* The last descriptor's padding may be missing. */
		if (nh.n_descsz > len - desc_off)
			goto truncated;
		if (is_pvh_note(&nh, img + off + name_off) &&
		    pvh_note_desc(img + off + desc_off, nh.n_descsz, info) < 0)
			return -1;
		if (align_up(nh.n_descsz, align) >= len - desc_off)
			break;
		pos = desc_off + align_up(nh.n_descsz, align);
	}
	return 0;
truncated:
	pr_err("kernel: truncated ELF note at offset 0x%llx",
	       (unsigned long long)(off + pos));
	return -1;
}

static int check_note(const uint8_t *img, const Elf64_Phdr *ph, unsigned i, size_t size,
		      struct elf_info *info)
{
	if (!range_ok(ph->p_offset, ph->p_filesz, size)) {
		pr_err("kernel: ELF note segment %u (offset 0x%llx, %llu bytes) lies beyond the end of the file",
		       i, (unsigned long long)ph->p_offset, (unsigned long long)ph->p_filesz);
		return -1;
	}
	return scan_notes(img, ph->p_offset, ph->p_filesz, ph->p_align == 8 ? 8 : 4, info);
}

static void account_load(const Elf64_Phdr *ph, struct elf_info *info, bool first)
{
	uint64_t end = ph->p_paddr + ph->p_memsz;   /* checked to lie in RAM */

	if (first || ph->p_paddr < info->load_start)
		info->load_start = ph->p_paddr;
	if (first || end > info->load_end)
		info->load_end = end;
	if (ph->p_align > info->max_align)
		info->max_align = ph->p_align;
}

/* Physical address of `addr` inside a loaded segment, by p_paddr first (a
 * vmlinux's e_entry is physical) and then by p_vaddr; 0 if none. */
static uint64_t to_phys(const uint8_t *img, const Elf64_Ehdr *eh, uint64_t addr)
{
	Elf64_Phdr ph;

	for (unsigned i = 0; i < eh->e_phnum; i++) {
		get_phdr(img, eh, i, &ph);
		if (ph.p_type == PT_LOAD && addr >= ph.p_paddr &&
		    addr - ph.p_paddr < ph.p_memsz)
			return addr;
	}
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		get_phdr(img, eh, i, &ph);
		if (ph.p_type == PT_LOAD && addr >= ph.p_vaddr &&
		    addr - ph.p_vaddr < ph.p_memsz)
			return ph.p_paddr + (addr - ph.p_vaddr);
	}
	return 0;
}

static int check_phdrs(const uint8_t *img, size_t size, const Elf64_Ehdr *eh,
		       const struct guest_mem *mem, struct elf_info *info)
{
	bool any_load = false;
	Elf64_Phdr ph;

	for (unsigned i = 0; i < eh->e_phnum; i++) {
		get_phdr(img, eh, i, &ph);
		if (ph.p_type == PT_NOTE && check_note(img, &ph, i, size, info) < 0)
			return -1;
		if (ph.p_type != PT_LOAD)
			continue;
		if (check_load(&ph, i, size, mem) < 0)
			return -1;
		if (ph.p_memsz == 0)
			continue;
		account_load(&ph, info, !any_load);
		any_load = true;
	}
	if (!any_load) {
		pr_err("kernel: ELF has no loadable segment");
		return -1;
	}
	return 0;
}

int elf_parse(const uint8_t *img, size_t size, const struct guest_mem *mem,
	      struct elf_info *info)
{
	Elf64_Ehdr eh;

	memset(info, 0, sizeof(*info));
	if (size < sizeof(eh)) {
		pr_err("kernel: truncated ELF header (%zu bytes)", size);
		return -1;
	}
	memcpy(&eh, img, sizeof(eh));
	if (check_ehdr(&eh, size) < 0 || check_phdrs(img, size, &eh, mem, info) < 0)
		return -1;
	info->e_entry = eh.e_entry;
	info->entry_phys = to_phys(img, &eh, eh.e_entry);
	if (info->has_pvh && to_phys(img, &eh, info->pvh_entry) != info->pvh_entry) {
		pr_err("kernel: PVH entry 0x%llx is outside the loaded segments",
		       (unsigned long long)info->pvh_entry);
		return -1;
	}
	return 0;
}

int elf_load(struct guest_mem *mem, const uint8_t *img, size_t size)
{
	Elf64_Ehdr eh;
	Elf64_Phdr ph;
	uint8_t *dst;

	/* elf_parse() has checked all of this; a cheap second look keeps a
	 * caller that skipped it from reading past the image. */
	if (size < sizeof(eh))
		return -1;
	memcpy(&eh, img, sizeof(eh));
	if (!range_ok(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(ph), size))
		return -1;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		get_phdr(img, &eh, i, &ph);
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		dst = guest_mem_ptr(mem, ph.p_paddr, ph.p_memsz);
		if (!dst || !range_ok(ph.p_offset, ph.p_filesz, size) ||
		    ph.p_filesz > ph.p_memsz)
			return -1;
		memcpy(dst, img + ph.p_offset, ph.p_filesz);
		/* Fresh RAM reads as zero, but a reused VM's may not. */
		memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
		guest_mem_mark_dirty(mem, ph.p_paddr, ph.p_memsz);
	}
	return 0;
}
