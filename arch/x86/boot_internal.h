/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the x86 boot protocols (boot.c, boot_linux.c,
 * boot_pvh.c). Not for use outside arch/x86/boot*.c.
 */
#ifndef ARCH_X86_BOOT_INTERNAL_H
#define ARCH_X86_BOOT_INTERNAL_H

#include "arch/x86/boot.h"
#include "arch/x86/elf.h"

/* Boot GDT selectors (LAYOUT_GDT): Linux wants __BOOT_CS 0x10 and
 * __BOOT_DS 0x18; PVH wants a flat 32-bit code segment, 0x08. */
#define BOOT_SEL_CODE32 0x08
#define BOOT_SEL_CODE64 0x10
#define BOOT_SEL_DATA   0x18
#define BOOT_GDT_ENTRIES 4

/* Linux on x86 keeps at most COMMAND_LINE_SIZE (2048) bytes incl. NUL. */
#define LINUX_CMDLINE_MAX 2047U

/* Write the boot GDT and fill entry->gdt_base/gdt_limit. */
int boot_write_gdt(struct guest_mem *mem, struct boot_entry *entry);

/* Write cfg->cmdline (NULL means "") at LAYOUT_CMDLINE, refusing one longer
 * than `max_len` bytes (excluding the NUL). Returns the length or -1. */
int64_t boot_write_cmdline(struct guest_mem *mem, const struct boot_config *cfg,
			   uint64_t max_len);

/*
 * Place cfg->initrd page-aligned as high as fits below
 * min(LAYOUT_INITRD_MAX, end of RAM below the hole, `limit`) and not below
 * `kernel_end`. Sets *gpa (0 when there is no initrd). 0 or -1.
 */
int boot_place_initrd(struct guest_mem *mem, const struct boot_config *cfg,
		      uint64_t kernel_end, uint64_t limit, uint64_t *gpa);

static inline bool boot_has_initrd(const struct boot_config *cfg)
{
	return cfg->initrd && cfg->initrd_size;
}

/* The protocols, after x86_load_kernel() has recognised the image. */
int boot_linux_bzimage(struct guest_mem *mem, const uint8_t *img, size_t size,
		       const struct boot_config *cfg, struct boot_entry *entry);
int boot_linux_vmlinux(struct guest_mem *mem, const uint8_t *img, size_t size,
		       const struct elf_info *info, const struct boot_config *cfg,
		       struct boot_entry *entry);
int boot_pvh(struct guest_mem *mem, const uint8_t *img, size_t size,
	     const struct elf_info *info, const struct boot_config *cfg,
	     struct boot_entry *entry);

#endif
