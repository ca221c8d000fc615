// SPDX-License-Identifier: MIT
/*
 * x86 kernel loading: recognise the image, choose the protocol, and the
 * pieces every protocol shares (boot GDT, command line, initrd placement).
 * The protocols themselves are in boot_linux.c (bzImage and vmlinux through
 * the Linux 64-bit boot protocol) and boot_pvh.c (PVH).
 *
 * An image is recognised by its magic: "\x7fELF" is an ELF (PVH or
 * vmlinux), 0xAA55 at 0x1FE with "HdrS" at 0x202 is a bzImage. Anything
 * else is refused before a byte of guest RAM is written.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/boot_internal.h"
#include "arch/x86/layout.h"
#include "vmm/log.h"

/* Flat 4 GiB descriptors: G=1, limit 0xFFFFF, P=1, DPL 0, S=1. */
#define GDT_CODE32 0x00CF9B000000FFFFULL  /* execute/read, accessed, D=1 */
#define GDT_CODE64 0x00AF9B000000FFFFULL  /* execute/read, accessed, L=1 */
#define GDT_DATA   0x00CF93000000FFFFULL  /* read/write, accessed, B=1 */

#define BZ_BOOT_FLAG_OFF 0x1FE
#define BZ_HEADER_OFF    0x202
#define BZ_BOOT_FLAG     0xAA55
#define BZ_HEADER_MAGIC  0x53726448U      /* "HdrS" */

int boot_write_gdt(struct guest_mem *mem, struct boot_entry *entry)
{
	uint64_t gdt[BOOT_GDT_ENTRIES] = { 0 };

	gdt[BOOT_SEL_CODE32 / 8] = GDT_CODE32;
	gdt[BOOT_SEL_CODE64 / 8] = GDT_CODE64;
	gdt[BOOT_SEL_DATA / 8] = GDT_DATA;
	if (guest_mem_write(mem, LAYOUT_GDT, gdt, sizeof(gdt)) < 0) {
		pr_err("guest RAM too small for the boot GDT");
		return -1;
	}
	entry->gdt_base = LAYOUT_GDT;
	entry->gdt_limit = sizeof(gdt) - 1;
	return 0;
}

int64_t boot_write_cmdline(struct guest_mem *mem, const struct boot_config *cfg,
			   uint64_t max_len)
{
	const char *cmdline = cfg->cmdline ? cfg->cmdline : "";
	size_t len = strlen(cmdline);

	if (max_len > LAYOUT_CMDLINE_MAX - 1)
		max_len = LAYOUT_CMDLINE_MAX - 1;
	if (len > max_len) {
		pr_err("kernel command line is %zu bytes; this kernel takes at most %llu",
		       len, (unsigned long long)max_len);
		return -1;
	}
	if (guest_mem_write(mem, LAYOUT_CMDLINE, cmdline, len + 1) < 0) {
		pr_err("guest RAM too small for the kernel command line");
		return -1;
	}
	return (int64_t)len;
}

static unsigned long long mib_up(uint64_t v)
{
	return (unsigned long long)((v + MiB - 1) / MiB);
}

int boot_place_initrd(struct guest_mem *mem, const struct boot_config *cfg,
		      uint64_t kernel_end, uint64_t limit, uint64_t *gpa)
{
	uint64_t top = guest_mem_end_below(mem, LAYOUT_INITRD_MAX);
	uint64_t size = cfg->initrd_size, floor, start;

	*gpa = 0;
	if (!boot_has_initrd(cfg))
		return 0;
	if (limit && limit < top)
		top = limit;
	floor = (kernel_end + GUEST_PAGE_SIZE - 1) & ~(GUEST_PAGE_SIZE - 1);
	start = size <= top ? (top - size) & ~(GUEST_PAGE_SIZE - 1) : 0;
	if (size > top || start < floor || !guest_mem_ptr(mem, start, size)) {
		pr_err("initrd of %llu MiB does not fit below 0x%llx above the kernel (which ends at 0x%llx)",
		       mib_up(size), (unsigned long long)top, (unsigned long long)kernel_end);
		return -1;
	}
	if (guest_mem_write(mem, start, cfg->initrd, size) < 0)
		return -1;
	*gpa = start;
	return 0;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) | (uint32_t)get16(p + 2) << 16;
}

static bool is_bzimage(const uint8_t *img, size_t size)
{
	return size >= BZ_HEADER_OFF + 4 &&
	       get16(img + BZ_BOOT_FLAG_OFF) == BZ_BOOT_FLAG &&
	       get32(img + BZ_HEADER_OFF) == BZ_HEADER_MAGIC;
}

static const char *const protocol_names[] = {
	[BOOT_AUTO] = "auto", [BOOT_PVH] = "pvh", [BOOT_LINUX64] = "linux64",
};

static int load_elf(struct guest_mem *mem, const uint8_t *img, size_t size,
		    const struct boot_config *cfg, struct boot_entry *entry)
{
	struct elf_info info;

	if (elf_parse(img, size, mem, &info) < 0)
		return -1;
	if (cfg->protocol == BOOT_PVH && !info.has_pvh) {
		pr_err("kernel: PVH boot needs an ELF with a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); this one has none");
		return -1;
	}
	if (cfg->protocol == BOOT_PVH || (cfg->protocol == BOOT_AUTO && info.has_pvh))
		return boot_pvh(mem, img, size, &info, cfg, entry);
	return boot_linux_vmlinux(mem, img, size, &info, cfg, entry);
}

/* See LAYOUT_RESET_VECTOR: real mode, CS base 0xF0000. */
static int write_reset_vector(struct guest_mem *mem)
{
	static const uint8_t stub[] = {
		0xb0, 0xfe,             /* mov al, 0xfe: "pulse reset" */
		0xe6, PORT_I8042_CMD,   /* out 0x64, al */
		0xfa,                   /* cli */
		0xf4,                   /* 1: hlt */
		0xeb, 0xfd,             /* jmp 1b */
	};

	if (guest_mem_write(mem, LAYOUT_RESET_VECTOR, stub, sizeof(stub)) < 0) {
		pr_err("cannot write the reset vector");
		return -1;
	}
	return 0;
}

int x86_load_kernel(struct guest_mem *mem, const uint8_t *img, size_t img_size,
		    const struct boot_config *cfg, struct boot_entry *entry)
{
	memset(entry, 0, sizeof(*entry));
	if (write_reset_vector(mem) < 0)
		return -1;
	if ((unsigned)cfg->protocol > BOOT_LINUX64) {
		pr_err("kernel: unknown boot protocol %d", cfg->protocol);
		return -1;
	}
	if (!img || img_size == 0) {
		pr_err("kernel: empty image");
		return -1;
	}
	if (elf_is_elf(img, img_size))
		return load_elf(mem, img, img_size, cfg, entry);
	if (!is_bzimage(img, img_size)) {
		pr_err("kernel: not a bzImage or ELF (bad magic)");
		return -1;
	}
	if (cfg->protocol == BOOT_PVH) {
		pr_err("kernel: PVH boot needs an ELF image with a PVH note; this is a bzImage (use --boot %s)",
		       protocol_names[BOOT_LINUX64]);
		return -1;
	}
	return boot_linux_bzimage(mem, img, img_size, cfg, entry);
}

static void human_size(char *buf, size_t cap, uint64_t v)
{
	if (v >= MiB)
		snprintf(buf, cap, "%llu MiB", mib_up(v));
	else
		snprintf(buf, cap, "%llu bytes", (unsigned long long)v);
}

static int read_all(int fd, const char *path, uint8_t *p, size_t size)
{
	size_t got = 0;

	while (got < size) {
		ssize_t n = read(fd, p + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			pr_err("cannot read %s: %s", path, strerror(errno));
			return -1;
		}
		if (n == 0) {
			pr_err("%s shrank while being read", path);
			return -1;
		}
		got += (size_t)n;
	}
	return 0;
}

static int check_stat(int fd, const char *path, size_t max, size_t *size)
{
	char have[32], lim[32];
	struct stat st;

	if (fstat(fd, &st) < 0) {
		pr_err("cannot stat %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		pr_err("%s is not a regular file", path);
		return -1;
	}
	if (st.st_size == 0) {
		pr_err("%s is empty", path);
		return -1;
	}
	if ((uint64_t)st.st_size > max) {
		human_size(have, sizeof(have), (uint64_t)st.st_size);
		human_size(lim, sizeof(lim), max);
		pr_err("%s is %s; the limit is %s", path, have, lim);
		return -1;
	}
	*size = (size_t)st.st_size;
	return 0;
}

int read_file(const char *path, size_t max, uint8_t **buf, size_t *size)
{
	uint8_t *p = NULL;
	size_t len = 0;
	int fd;

	*buf = NULL;
	*size = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		pr_err("cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (check_stat(fd, path, max, &len) < 0)
		goto err;
	p = malloc(len);
	if (!p) {
		pr_err("out of memory reading %s", path);
		goto err;
	}
	if (read_all(fd, path, p, len) < 0)
		goto err;
	close(fd);
	*buf = p;
	*size = len;
	return 0;
err:
	free(p);
	close(fd);
	return -1;
}
