// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: arbitrary bytes as the --kernel file through
 * x86_load_kernel() (arch/x86/boot.c): the ELF and PVH-note parser, the
 * bzImage setup header, and every placement check against a guest_mem
 * shaped like the VMM's (32 MiB of RAM in a memfd). The first byte picks
 * the protocol (auto, pvh, linux64) and whether an initrd comes along.
 * A loader bug here is a host process writing outside guest RAM.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/boot.h"
#include "vmm/guest_mem.h"
#include "vmm/log.h"

#define RAM (32ULL << 20)

static struct guest_mem mem;
static uint8_t initrd[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct mem_region *r = &mem.regions[0];

	(void)argc;
	(void)argv;
	log_threshold = LOG_ERR;
	r->gpa = 0;
	r->size = RAM;
	r->memfd = memfd_create("fuzz-ram", MFD_CLOEXEC);
	if (r->memfd < 0 || ftruncate(r->memfd, (off_t)RAM) < 0)
		abort();
	r->hva = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	r->vmm_dirty = calloc(RAM / GUEST_PAGE_SIZE / 64, sizeof(uint64_t));
	if (r->hva == MAP_FAILED || !r->vmm_dirty)
		abort();
	mem.nr_regions = 1;
	mem.ram_size = RAM;
	memset(initrd, 0xa5, sizeof(initrd));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum boot_protocol protos[] = { BOOT_AUTO, BOOT_PVH, BOOT_LINUX64 };
	struct boot_config cfg = { .cmdline = "console=ttyS0" };
	struct boot_entry entry;

	if (!size)
		return 0;
	cfg.protocol = protos[data[0] % 3];
	if (data[0] & 4) {
		cfg.initrd = initrd;
		cfg.initrd_size = sizeof(initrd);
	}
	x86_load_kernel(&mem, data + 1, size - 1, &cfg, &entry);
	return 0;
}
