// SPDX-License-Identifier: MIT
/*
 * PVH boot (Xen's x86/HVM direct boot ABI, as Linux, QEMU's microvm and
 * our test guest use it): the ELF is loaded at its physical addresses and
 * entered at the address in its XEN_ELFNOTE_PHYS32_ENTRY note, in flat
 * 32-bit protected mode with paging off and EBX pointing to hvm_start_info.
 *
 * Page LAYOUT_PVH_START_INFO holds, in order: hvm_start_info, the memory
 * map (our e820 map, same types), and one module entry for the initrd.
 */
#include <string.h>

#include "arch/x86/boot_internal.h"
#include "arch/x86/layout.h"
#include "vmm/log.h"

#define HVM_START_MAGIC   0x336ec578U
#define HVM_START_VERSION 1     /* version 1 adds the memory map */

/* The ABI's structures (xen/include/public/arch-x86/hvm/start_info.h). */
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info ABI");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry ABI");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry ABI");

#define PVH_MEMMAP_GPA  (LAYOUT_PVH_START_INFO + sizeof(struct hvm_start_info))
#define PVH_MODLIST_GPA (PVH_MEMMAP_GPA + E820_MAX * sizeof(struct hvm_memmap_table_entry))

/* Everything must stay inside the page, below the zero page. */
_Static_assert(PVH_MODLIST_GPA + sizeof(struct hvm_modlist_entry) <= LAYOUT_ZERO_PAGE,
	       "PVH start info overflows its page");

static int write_memmap(struct guest_mem *mem, const struct boot_config *cfg,
			struct hvm_start_info *si)
{
	struct hvm_memmap_table_entry map[E820_MAX];
	struct e820_entry e820[E820_MAX];
	int n = e820_build(mem, cfg->acpi_gpa, cfg->acpi_size, e820, E820_MAX);

	if (n < 0) {
		pr_err("kernel: the PVH memory map needs more than %d entries", E820_MAX);
		return -1;
	}
	memset(map, 0, sizeof(map));
	for (int i = 0; i < n; i++) {
		map[i].addr = e820[i].addr;
		map[i].size = e820[i].size;
		map[i].type = e820[i].type;
	}
	if (guest_mem_write(mem, PVH_MEMMAP_GPA, map, (uint64_t)n * sizeof(map[0])) < 0) {
		pr_err("guest RAM too small for the PVH memory map");
		return -1;
	}
	si->memmap_paddr = PVH_MEMMAP_GPA;
	si->memmap_entries = (uint32_t)n;
	return 0;
}

static int write_modlist(struct guest_mem *mem, const struct boot_config *cfg,
			 uint64_t initrd, struct hvm_start_info *si)
{
	struct hvm_modlist_entry mod = { .paddr = initrd, .size = cfg->initrd_size };

	if (!initrd)
		return 0;
	if (guest_mem_write(mem, PVH_MODLIST_GPA, &mod, sizeof(mod)) < 0)
		return -1;
	si->nr_modules = 1;
	si->modlist_paddr = PVH_MODLIST_GPA;
	return 0;
}

static int write_start_info(struct guest_mem *mem, const struct boot_config *cfg,
			    uint64_t initrd)
{
	struct hvm_start_info si = {
		.magic = HVM_START_MAGIC,
		.version = HVM_START_VERSION,
		.cmdline_paddr = LAYOUT_CMDLINE,
		.rsdp_paddr = cfg->rsdp_gpa,
	};

	if (write_memmap(mem, cfg, &si) < 0)
		return -1;
	if (write_modlist(mem, cfg, initrd, &si) < 0 ||
	    guest_mem_write(mem, LAYOUT_PVH_START_INFO, &si, sizeof(si)) < 0) {
		pr_err("guest RAM too small for the PVH start info");
		return -1;
	}
	return 0;
}

int boot_pvh(struct guest_mem *mem, const uint8_t *img, size_t size,
	     const struct elf_info *info, const struct boot_config *cfg,
	     struct boot_entry *entry)
{
	uint64_t initrd;

	if (elf_load(mem, img, size) < 0) {
		pr_err("kernel: cannot load the ELF segments");
		return -1;
	}
	/* The guest decides how much command line it keeps. */
	if (boot_write_cmdline(mem, cfg, LAYOUT_CMDLINE_MAX - 1) < 0)
		return -1;
	if (boot_place_initrd(mem, cfg, info->load_end, 0, &initrd) < 0)
		return -1;
	if (write_start_info(mem, cfg, initrd) < 0 || boot_write_gdt(mem, entry) < 0)
		return -1;
	entry->mode = CPU_MODE_PROT32;
	entry->protocol = BOOT_PVH;
	entry->rip = info->pvh_entry;
	entry->rbx = LAYOUT_PVH_START_INFO;
	entry->code_sel = BOOT_SEL_CODE32;
	entry->data_sel = BOOT_SEL_DATA;
	entry->kernel_start = info->load_start;
	entry->kernel_end = info->load_end;
	entry->initrd_start = initrd;
	return 0;
}
