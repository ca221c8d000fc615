// SPDX-License-Identifier: MIT
/*
 * The e820 memory map, shared by the Linux zero page and the PVH memmap.
 *
 * Rather than splitting RAM ranges around each reservation, the address
 * space is cut at every boundary (region ends, the legacy area, the ACPI
 * tables) and each piece is typed by priority: legacy reserved area, then
 * ACPI tables, then RAM, else nothing (the MMIO hole and beyond). Adjacent
 * pieces of one type merge. The result is sorted and non-overlapping by
 * construction, whatever the regions and the ACPI area look like.
 */
#include <stdlib.h>

#include "arch/x86/boot.h"
#include "arch/x86/layout.h"

#define E820_MAX_POINTS (2 * GUEST_MEM_MAX_REGIONS + 4)

struct e820_ctx {
	const struct guest_mem *mem;
	uint64_t acpi_start, acpi_end;  /* empty when start == end */
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint32_t type_at(const struct e820_ctx *c, uint64_t addr)
{
	/* The EBDA, VGA window and BIOS area: Linux must not use them, and
	 * our ACPI tables live there (LAYOUT_ACPI_START). */
	if (addr >= LAYOUT_EBDA_START && addr < LAYOUT_HIGH_MEM_START)
		return E820_RESERVED;
	if (!guest_mem_region(c->mem, addr))
		return 0;
	if (addr >= c->acpi_start && addr < c->acpi_end)
		return E820_ACPI;
	return E820_RAM;
}

static unsigned collect_points(const struct e820_ctx *c, uint64_t *pts)
{
	unsigned n = 0;

	for (unsigned i = 0; i < c->mem->nr_regions; i++) {
		pts[n++] = c->mem->regions[i].gpa;
		pts[n++] = c->mem->regions[i].gpa + c->mem->regions[i].size;
	}
	pts[n++] = LAYOUT_EBDA_START;
	pts[n++] = LAYOUT_HIGH_MEM_START;
	pts[n++] = c->acpi_start;
	pts[n++] = c->acpi_end;
	qsort(pts, n, sizeof(*pts), cmp_u64);
	return n;
}

/* Extend the last entry or start a new one; -1 when `max` is exceeded. */
static int emit(struct e820_entry *out, int *n, int max, uint64_t start, uint64_t end,
		uint32_t type)
{
	struct e820_entry *last = *n ? &out[*n - 1] : NULL;

	if (last && last->type == type && last->addr + last->size == start) {
		last->size += end - start;
		return 0;
	}
	if (*n >= max)
		return -1;
	out[(*n)++] = (struct e820_entry){ .addr = start, .size = end - start, .type = type };
	return 0;
}

int e820_build(const struct guest_mem *mem, uint64_t acpi_gpa, uint64_t acpi_size,
	       struct e820_entry *out, int max)
{
	struct e820_ctx c = { .mem = mem, .acpi_start = acpi_gpa, .acpi_end = acpi_gpa };
	uint64_t pts[E820_MAX_POINTS];
	unsigned np;
	int n = 0;

	if (mem->nr_regions > GUEST_MEM_MAX_REGIONS)
		return -1;
	/* Saturate rather than wrap: a bogus size must not become a tiny one. */
	c.acpi_end = acpi_size > UINT64_MAX - acpi_gpa ? UINT64_MAX : acpi_gpa + acpi_size;
	np = collect_points(&c, pts);
	for (unsigned i = 0; i + 1 < np; i++) {
		uint32_t type;

		if (pts[i] == pts[i + 1])
			continue;
		type = type_at(&c, pts[i]);
		if (type && emit(out, &n, max, pts[i], pts[i + 1], type) < 0)
			return -1;
	}
	return n;
}
