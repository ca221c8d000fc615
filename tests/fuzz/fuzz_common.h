/* SPDX-License-Identifier: MIT */
/*
 * What several fuzz targets share: guest RAM regions made the way the VMM
 * makes them (a memfd mapped shared, with the VMM's dirty bitmap), at any
 * layout a target wants, and a reader that takes bytes off the input and
 * gives zeroes once it runs out (so every input means something).
 */
#ifndef TESTS_FUZZ_FUZZ_COMMON_H
#define TESTS_FUZZ_FUZZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/guest_mem.h"

/* A region of `size` bytes at `gpa`, with `guard` bytes of PROT_NONE on
 * either side (0: none) so a read past it faults under ASan too. Aborts on
 * failure: set-up, not input. */
static inline void fuzz_region_init(struct mem_region *r, uint64_t gpa, uint64_t size,
				    unsigned slot, size_t guard)
{
	uint8_t *area = mmap(NULL, size + 2 * guard, PROT_NONE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	r->gpa = gpa;
	r->size = size;
	r->slot = slot;
	r->memfd = memfd_create("fuzz-ram", MFD_CLOEXEC);
	if (area == MAP_FAILED || r->memfd < 0 || ftruncate(r->memfd, (off_t)size) < 0)
		abort();
	r->hva = mmap(area + guard, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		      r->memfd, 0);
	r->vmm_dirty = calloc((size / GUEST_PAGE_SIZE + 63) / 64, sizeof(uint64_t));
	if (r->hva == MAP_FAILED || !r->vmm_dirty)
		abort();
}

struct input {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t get8(struct input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static inline uint16_t get16(struct input *in)
{
	return (uint16_t)(get8(in) | get8(in) << 8);
}

static inline uint32_t get32(struct input *in)
{
	return get16(in) | (uint32_t)get16(in) << 16;
}

#endif
