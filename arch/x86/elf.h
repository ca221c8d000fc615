/* SPDX-License-Identifier: MIT */
/*
 * ELF64 kernel images: header and program-header validation, PT_LOAD
 * loading at p_paddr, and the Xen PVH entry note. The image is untrusted
 * input: every offset and size is checked against the image size with
 * overflow-safe arithmetic before anything is read or copied, and every
 * segment against guest RAM before anything is written.
 */
#ifndef ARCH_X86_ELF_H
#define ARCH_X86_ELF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/guest_mem.h"

/* Xen's ELF note carrying the 32-bit PVH entry point. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

struct elf_info {
	uint64_t e_entry;           /* as written in the file (may be virtual) */
	uint64_t entry_phys;        /* e_entry as a guest-physical address, 0 if none */
	uint64_t load_start;        /* lowest p_paddr of a PT_LOAD */
	uint64_t load_end;          /* highest p_paddr + p_memsz (exclusive) */
	uint64_t max_align;         /* largest PT_LOAD p_align */
	bool has_pvh;
	uint64_t pvh_entry;
};

/* True if `img` starts with the ELF magic (nothing else is checked). */
bool elf_is_elf(const uint8_t *img, size_t size);

/*
 * Validate the ELF header, every program header, every PT_LOAD (inside the
 * image, p_filesz <= p_memsz, inside one guest RAM region, not below 1 MiB
 * where the boot structures live) and every PT_NOTE; fill `info`.
 * 0 on success; one pr_err line and -1 otherwise.
 */
int elf_parse(const uint8_t *img, size_t size, const struct guest_mem *mem,
	      struct elf_info *info);

/* Copy every PT_LOAD into guest RAM (after elf_parse() said yes). */
int elf_load(struct guest_mem *mem, const uint8_t *img, size_t size);

#endif
