// SPDX-License-Identifier: MIT
/*
 * The Linux x86 64-bit boot protocol (Documentation/arch/x86/boot.rst,
 * "64-bit Boot Protocol"), for a bzImage and for an uncompressed vmlinux.
 *
 * We enter the kernel in long mode at its 64-bit entry with RSI pointing to
 * boot_params, so no real-mode setup code and no BIOS run: boot_params must
 * hold everything the setup code would have gathered (e820 map, command
 * line, initrd, RSDP). The page tables identity-map 0-4 GiB, which covers
 * the kernel, boot_params, the command line and the initrd, all below 3 GiB.
 *
 * For a bzImage the setup header comes from the image itself (the kernel
 * reads back fields such as init_size and kernel_alignment from it); for a
 * vmlinux there is none, so we build the few fields the kernel reads.
 */
#include <asm/bootparam.h>
#include <stddef.h>
#include <string.h>

#include "arch/x86/boot_internal.h"
#include "arch/x86/layout.h"
#include "vmm/log.h"

_Static_assert(sizeof(struct boot_params) == 4096, "boot_params is one page");

#define SETUP_HDR_OFF    0x1F1
#define SETUP_JUMP_OFF   0x201      /* jump's displacement: header ends at 0x202 + it */
#define SETUP_HDR_END    (SETUP_HDR_OFF + sizeof(struct setup_header))
#define BOOT_FLAG        0xAA55
#define HDRS_MAGIC       0x53726448U    /* "HdrS" */
#define PROTO_MIN        0x020C     /* 2.12: xloadflags, the 64-bit entry */
#define PROTO_VMLINUX    0x020F     /* what we claim when we build the header */
#define LOADER_UNDEFINED 0xFF       /* type_of_loader: "no assigned id" */
#define ENTRY64_OFFSET   0x200      /* 64-bit entry, from the protected-mode start */

#define PTE_P   (1ULL << 0)
#define PTE_RW  (1ULL << 1)
#define PTE_PS  (1ULL << 7)

/* What we found in a bzImage and decided about it. */
struct bzimage {
	const uint8_t *img;
	size_t size;
	size_t hdr_end;          /* file offset where the setup header ends */
	struct setup_header hdr; /* zero beyond hdr_end */
	uint64_t setup_size;     /* real-mode part, skipped */
	uint64_t pm_size;        /* protected-mode part, loaded */
	uint64_t load;           /* where the protected-mode part goes */
	uint64_t end;            /* end of everything the kernel will use */
};

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

/* Identity map 0-4 GiB with 2 MiB pages: PML4[0] -> PDPT[0..3] -> 4 PDs. */
static int write_page_tables(struct guest_mem *mem)
{
	uint64_t table[512];

	memset(table, 0, sizeof(table));
	table[0] = LAYOUT_PDPT | PTE_P | PTE_RW;
	if (guest_mem_write(mem, LAYOUT_PML4, table, sizeof(table)) < 0)
		return -1;
	memset(table, 0, sizeof(table));
	for (unsigned i = 0; i < 4; i++)
		table[i] = (LAYOUT_PD + i * GUEST_PAGE_SIZE) | PTE_P | PTE_RW;
	if (guest_mem_write(mem, LAYOUT_PDPT, table, sizeof(table)) < 0)
		return -1;
	for (unsigned i = 0; i < 4; i++) {
		for (unsigned j = 0; j < 512; j++)
			table[j] = (i * GiB + j * 2 * MiB) | PTE_P | PTE_RW | PTE_PS;
		if (guest_mem_write(mem, LAYOUT_PD + i * GUEST_PAGE_SIZE, table,
				    sizeof(table)) < 0)
			return -1;
	}
	return 0;
}

static int setup_long_mode(struct guest_mem *mem, uint64_t rip, struct boot_entry *entry)
{
	if (write_page_tables(mem) < 0) {
		pr_err("guest RAM too small for the boot page tables");
		return -1;
	}
	if (boot_write_gdt(mem, entry) < 0)
		return -1;
	entry->mode = CPU_MODE_LONG64;
	entry->protocol = BOOT_LINUX64;
	entry->rip = rip;
	entry->rsi = LAYOUT_ZERO_PAGE;
	entry->cr3 = LAYOUT_PML4;
	entry->code_sel = BOOT_SEL_CODE64;
	entry->data_sel = BOOT_SEL_DATA;
	return 0;
}

static int fill_e820(struct boot_params *bp, const struct guest_mem *mem,
		     const struct boot_config *cfg)
{
	struct e820_entry map[E820_MAX];
	int n = e820_build(mem, cfg->acpi_gpa, cfg->acpi_size, map, E820_MAX);

	if (n < 0) {
		pr_err("kernel: the e820 map needs more than %d entries", E820_MAX);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		bp->e820_table[i].addr = map[i].addr;
		bp->e820_table[i].size = map[i].size;
		bp->e820_table[i].type = map[i].type;
	}
	bp->e820_entries = (uint8_t)n;
	return 0;
}

/*
 * What both image kinds share: command line, initrd (above `kernel_end`,
 * below `initrd_limit` if non-zero), e820, RSDP; then write the zero page.
 */
static int finish_zero_page(struct guest_mem *mem, struct boot_params *bp,
			    const struct boot_config *cfg, uint64_t kernel_end,
			    uint64_t cmdline_max, uint64_t initrd_limit,
			    struct boot_entry *entry)
{
	uint64_t initrd;

	if (boot_write_cmdline(mem, cfg, cmdline_max) < 0)
		return -1;
	bp->hdr.cmd_line_ptr = (uint32_t)LAYOUT_CMDLINE;
	if (boot_place_initrd(mem, cfg, kernel_end, initrd_limit, &initrd) < 0)
		return -1;
	bp->hdr.ramdisk_image = (uint32_t)initrd;
	bp->ext_ramdisk_image = (uint32_t)(initrd >> 32);
	bp->hdr.ramdisk_size = initrd ? (uint32_t)cfg->initrd_size : 0;
	bp->ext_ramdisk_size = initrd ? (uint32_t)((uint64_t)cfg->initrd_size >> 32) : 0;
	if (fill_e820(bp, mem, cfg) < 0)
		return -1;
	bp->acpi_rsdp_addr = cfg->rsdp_gpa;     /* protocol 2.14; older kernels scan */
	bp->hdr.type_of_loader = LOADER_UNDEFINED;
	if (guest_mem_write(mem, LAYOUT_ZERO_PAGE, bp, sizeof(*bp)) < 0) {
		pr_err("guest RAM too small for boot_params");
		return -1;
	}
	entry->initrd_start = initrd;
	return 0;
}

/* --- bzImage ------------------------------------------------------------- */

static int bz_read_header(struct bzimage *bz)
{
	const uint8_t *img = bz->img;
	uint16_t version;

	bz->hdr_end = 0x202 + (size_t)img[SETUP_JUMP_OFF];
	if (bz->hdr_end > bz->size || bz->hdr_end < 0x208) {
		pr_err("kernel: truncated setup header (ends at 0x%zx, file is %zu bytes)",
		       bz->hdr_end, bz->size);
		return -1;
	}
	memcpy(&version, img + 0x206, sizeof(version));
	if (version < PROTO_MIN) {
		pr_err("kernel: boot protocol %u.%02u is too old; 2.12 or newer is needed",
		       version >> 8, version & 0xff);
		return -1;
	}
	if (bz->hdr_end < SETUP_HDR_OFF + offsetof(struct setup_header, init_size) + 4) {
		pr_err("kernel: truncated setup header (ends at 0x%zx, protocol 2.%02u needs more)",
		       bz->hdr_end, version & 0xff);
		return -1;
	}
	memset(&bz->hdr, 0, sizeof(bz->hdr));
	memcpy(&bz->hdr, img + SETUP_HDR_OFF,
	       (bz->hdr_end < SETUP_HDR_END ? bz->hdr_end : SETUP_HDR_END) - SETUP_HDR_OFF);
	return 0;
}

static int bz_check(struct bzimage *bz)
{
	const struct setup_header *h = &bz->hdr;
	unsigned sects = h->setup_sects ? h->setup_sects : 4;

	if (!(h->loadflags & LOADED_HIGH)) {
		pr_err("kernel: a zImage (not loaded high) cannot be booted; use a bzImage");
		return -1;
	}
	if (!(h->xloadflags & XLF_KERNEL_64)) {
		pr_err("kernel: bzImage has no 64-bit entry point (XLF_KERNEL_64 not set)");
		return -1;
	}
	bz->setup_size = (uint64_t)(sects + 1) * 512;
	if (bz->setup_size >= bz->size) {
		pr_err("kernel: truncated bzImage (%llu bytes of setup code, file of %zu)",
		       (unsigned long long)bz->setup_size, bz->size);
		return -1;
	}
	bz->pm_size = bz->size - bz->setup_size;
	if ((uint64_t)h->syssize * 16 > bz->pm_size) {
		pr_err("kernel: truncated bzImage (protected-mode code is %llu bytes, header says %llu)",
		       (unsigned long long)bz->pm_size, (unsigned long long)h->syssize * 16);
		return -1;
	}
	if (h->relocatable_kernel &&
	    (h->kernel_alignment == 0 || (h->kernel_alignment & (h->kernel_alignment - 1)))) {
		pr_err("kernel: bad kernel_alignment 0x%x", h->kernel_alignment);
		return -1;
	}
	return 0;
}

/*
 * Where to load, and how far the kernel will reach. The 64-bit entry
 * decompresses in place into a buffer of init_size bytes that starts at the
 * load address rounded up to kernel_alignment, but never below
 * LOAD_PHYSICAL_ADDR, which the header publishes as pref_address; a kernel
 * that is not relocatable always runs there. So: load at pref_address when
 * the whole buffer fits there (the kernel then need not move itself), else
 * at 1 MiB; either way the buffer must fit in RAM below the hole.
 */
static int bz_layout(const struct guest_mem *mem, struct bzimage *bz)
{
	const struct setup_header *h = &bz->hdr;
	uint64_t low_end = guest_mem_end_below(mem, LAYOUT_MMIO_HOLE);
	uint64_t need = max_u64(h->init_size, bz->pm_size);
	uint64_t pref = h->pref_address, run;

	bz->load = LAYOUT_KERNEL_DEFAULT;
	if (pref >= LAYOUT_KERNEL_DEFAULT && pref < low_end && need <= low_end - pref)
		bz->load = pref;
	run = h->relocatable_kernel ? align_up(bz->load, h->kernel_alignment) : bz->load;
	run = max_u64(run, pref);
	if (bz->load + bz->pm_size > low_end || run > low_end || need > low_end - run) {
		pr_err("kernel: needs %llu MiB of RAM from 0x%llx (init_size), but guest RAM below the hole ends at 0x%llx; give the VM more memory",
		       (unsigned long long)((need + MiB - 1) / MiB), (unsigned long long)run,
		       (unsigned long long)low_end);
		return -1;
	}
	bz->end = max_u64(bz->load + bz->pm_size, run + need);
	return 0;
}

int boot_linux_bzimage(struct guest_mem *mem, const uint8_t *img, size_t size,
		       const struct boot_config *cfg, struct boot_entry *entry)
{
	struct bzimage bz = { .img = img, .size = size };
	struct boot_params bp;

	if (bz_read_header(&bz) < 0 || bz_check(&bz) < 0 || bz_layout(mem, &bz) < 0)
		return -1;
	if (guest_mem_write(mem, bz.load, img + bz.setup_size, bz.pm_size) < 0) {
		pr_err("kernel: cannot load the bzImage at 0x%llx", (unsigned long long)bz.load);
		return -1;
	}
	/* A clean zero page with the image's own setup header, as boot.rst asks. */
	memset(&bp, 0, sizeof(bp));
	memcpy((uint8_t *)&bp + SETUP_HDR_OFF, img + SETUP_HDR_OFF,
	       (bz.hdr_end < SETUP_HDR_END ? bz.hdr_end : SETUP_HDR_END) - SETUP_HDR_OFF);
	bp.hdr.code32_start = (uint32_t)bz.load;
	/* The setup_data list is the loader's to build; we pass none, and a
	 * pointer left in the image would send the kernel to random RAM. */
	bp.hdr.setup_data = 0;
	if (finish_zero_page(mem, &bp, cfg, bz.end, bz.hdr.cmdline_size,
			     (uint64_t)bz.hdr.initrd_addr_max + 1, entry) < 0)
		return -1;
	entry->kernel_start = bz.load;
	entry->kernel_end = bz.end;
	return setup_long_mode(mem, bz.load + ENTRY64_OFFSET, entry);
}

/* --- Uncompressed vmlinux ------------------------------------------------- */

/*
 * The header a vmlinux lacks. Its startup_64 reads little of it: the
 * command line, initrd and e820 fields, and kernel_alignment. The kernel
 * runs where its PT_LOADs put it, so it is not relocated; CAN_USE_HEAP and
 * heap_end_ptr matter only to the real-mode setup code, which does not run.
 */
static void vmlinux_header(struct setup_header *h, const struct elf_info *info)
{
	uint64_t align = info->max_align;

	if (align < 2 * MiB || (align & (align - 1)) || align > GiB)
		align = 2 * MiB;
	h->boot_flag = BOOT_FLAG;
	h->header = HDRS_MAGIC;
	h->version = PROTO_VMLINUX;
	h->loadflags = LOADED_HIGH;
	h->kernel_alignment = (uint32_t)align;
	h->min_alignment = (uint8_t)__builtin_ctzll(align);
	h->xloadflags = XLF_KERNEL_64;
	h->cmdline_size = LINUX_CMDLINE_MAX;
	h->initrd_addr_max = (uint32_t)(LAYOUT_INITRD_MAX - 1);
	h->pref_address = info->load_start;
	h->init_size = (uint32_t)(info->load_end - info->load_start);
}

int boot_linux_vmlinux(struct guest_mem *mem, const uint8_t *img, size_t size,
		       const struct elf_info *info, const struct boot_config *cfg,
		       struct boot_entry *entry)
{
	struct boot_params bp;

	if (!info->entry_phys) {
		pr_err("kernel: ELF entry point 0x%llx is not inside a loaded segment",
		       (unsigned long long)info->e_entry);
		return -1;
	}
	if (elf_load(mem, img, size) < 0) {
		pr_err("kernel: cannot load the ELF segments");
		return -1;
	}
	memset(&bp, 0, sizeof(bp));
	vmlinux_header(&bp.hdr, info);
	if (finish_zero_page(mem, &bp, cfg, info->load_end, LINUX_CMDLINE_MAX, 0, entry) < 0)
		return -1;
	entry->kernel_start = info->load_start;
	entry->kernel_end = info->load_end;
	return setup_long_mode(mem, info->entry_phys, entry);
}
