/* SPDX-License-Identifier: MIT */
/*
 * Kernel loading for x86: recognises the image, places kernel, initrd and
 * command line in guest RAM, writes boot_params (Linux 64-bit boot protocol)
 * or hvm_start_info (PVH), the e820 map and, for long-mode entry, the
 * identity page tables and GDT, and a reset-vector stub that reboots through
 * the i8042 (layout.h: LAYOUT_RESET_VECTOR). Touches guest RAM only through guest_mem.
 * It does not set vCPU registers: it says what they must be in boot_entry.
 *
 * Images: bzImage (setup header "HdrS", protocol >= 2.12, XLF_KERNEL_64),
 * ELF64 vmlinux (loaded at p_paddr), and ELF with a Xen PVH note
 * (XEN_ELFNOTE_PHYS32_ENTRY). An ELF with a PVH note boots through PVH
 * unless BOOT_LINUX64 is asked for. Every offset and length read from an
 * image is checked against the image size before use.
 */
#ifndef ARCH_X86_BOOT_H
#define ARCH_X86_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/guest_mem.h"

enum boot_protocol {
	BOOT_AUTO,      /* PVH if the ELF has the note, else linux64 */
	BOOT_PVH,
	BOOT_LINUX64,
};

enum boot_cpu_mode {
	CPU_MODE_PROT32,    /* PVH: 32-bit flat protected mode, paging off */
	CPU_MODE_LONG64,    /* linux64: long mode, identity-mapped 0-4 GiB */
};

struct boot_config {
	enum boot_protocol protocol;
	const char *cmdline;        /* NUL-terminated */
	const uint8_t *initrd;      /* NULL if none */
	size_t initrd_size;
	uint64_t rsdp_gpa;          /* ACPI RSDP, already in guest RAM */
	uint64_t acpi_gpa;          /* ACPI tables area to reserve in e820 */
	uint64_t acpi_size;
};

struct boot_entry {
	enum boot_cpu_mode mode;
	enum boot_protocol protocol;    /* what was chosen */
	uint64_t rip;
	uint64_t rsi;           /* linux64: boot_params address */
	uint64_t rbx;           /* PVH: hvm_start_info address */
	uint64_t cr3;           /* linux64: PML4 address */
	uint64_t gdt_base;
	uint16_t gdt_limit;
	uint16_t code_sel;      /* CS selector for the entry mode */
	uint16_t data_sel;
	uint64_t kernel_start, kernel_end;  /* guest-physical, for diagnostics/tests */
	uint64_t initrd_start;
};

/* e820 types */
#define E820_RAM      1
#define E820_RESERVED 2
#define E820_ACPI     3

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));

#define E820_MAX 16

/*
 * The memory map given to the guest: RAM regions minus the legacy area
 * (EBDA_START..1 MiB reserved) and the ACPI tables (typed E820_ACPI when
 * they are outside the reserved legacy area). Sorted, non-overlapping.
 * Returns the number of entries or -1 if `max` is too small.
 */
int e820_build(const struct guest_mem *mem, uint64_t acpi_gpa, uint64_t acpi_size,
	       struct e820_entry *out, int max);

/* Load `img` (the kernel file's bytes). 0 on success; on failure one
 * pr_err line saying what is wrong, and -1. */
int x86_load_kernel(struct guest_mem *mem, const uint8_t *img, size_t img_size,
		    const struct boot_config *cfg, struct boot_entry *entry);

/* Convenience: read `path` fully (bounded by `max`) into a malloc'd buffer. */
int read_file(const char *path, size_t max, uint8_t **buf, size_t *size);

#endif
