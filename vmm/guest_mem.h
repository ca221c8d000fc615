/* SPDX-License-Identifier: MIT */
/*
 * Guest RAM: one memfd per region, mapped MAP_SHARED into the VMM, so the
 * same pages can be registered with KVM, written to a file, served through
 * userfaultfd or handed to another process. Regions never overlap and never
 * cross the MMIO hole.
 *
 * Every write the VMM makes into guest RAM goes through guest_mem_write() or
 * guest_mem_mark_dirty(): KVM logs only what vCPUs write.
 */
#ifndef VMM_GUEST_MEM_H
#define VMM_GUEST_MEM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 4
#define GUEST_PAGE_SIZE       4096ULL
#define GUEST_PAGE_SHIFT      12

struct mem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
	int memfd;
	uint32_t slot;          /* KVM memory slot number */
	bool file_backed;       /* mapped copy-on-write from a snapshot (--lazy):
				 * the memfd no longer reflects the guest's pages */
	/* Pages the VMM itself wrote (device DMA, boot set-up): one bit per
	 * page, set atomically from any thread, harvested by migration. */
	_Atomic uint64_t *vmm_dirty;
	/* After a lazy restore through userfaultfd: the pages the guest took
	 * faults on (what it touched before the push got there), kept for the
	 * next save's working set. NULL when not recorded. */
	_Atomic uint64_t *touched;
};

struct guest_mem {
	struct mem_region regions[GUEST_MEM_MAX_REGIONS];
	unsigned nr_regions;
	uint64_t ram_size;      /* sum of region sizes */
	/* Set when a save begins: its own reads fault too, and are not the
	 * guest's working set (regions' `touched`). */
	_Atomic bool touched_off;
};

/* Lay out `ram_size` bytes of RAM around the x86 MMIO hole and map it. */
int guest_mem_init(struct guest_mem *mem, uint64_t ram_size);
/* This host's RAM plus swap in bytes (UINT64_MAX if unknown): no guest may
 * have more, whether --memory asks or a stream does. */
uint64_t guest_mem_host_limit(void);
void guest_mem_destroy(struct guest_mem *mem);

/* Host pointer for [gpa, gpa+len) if it lies entirely inside one region, else NULL. */
void *guest_mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len);
const struct mem_region *guest_mem_region(const struct guest_mem *mem, uint64_t gpa);

/* Copy into/out of guest RAM; -1 if any byte falls outside RAM. */
int guest_mem_write(struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len);
int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len);
/* Loading a VM that has not run yet (restore, incoming migration): write
 * [off, off+len) of region `r` through its memfd (page cache: no page
 * faults; a copy-on-write file region gets memcpy). Not marked dirty: there
 * is nothing to track yet. 0, or -1 with errno. */
int guest_mem_load(const struct mem_region *r, uint64_t off, const void *src, uint64_t len);
/* Record that the VMM wrote [gpa, gpa+len) by some other means. Call it
 * after the write completes, so a harvest in between sees it again. */
void guest_mem_mark_dirty(struct guest_mem *mem, uint64_t gpa, uint64_t len);
/* Move region `r`'s VMM-dirty bits into `out` (OR), clearing them. `out`
 * has one bit per page of the region. Returns the number of pages moved. */
uint64_t guest_mem_harvest_dirty(struct mem_region *r, uint64_t *out);
bool guest_mem_page_dirty(const struct mem_region *r, uint64_t page);

/* Is the 4 KiB page at p all zeroes? (p must be 8-byte aligned) */
static inline bool guest_page_is_zero(const void *p)
{
	const uint64_t *w = p;

	for (size_t i = 0; i < GUEST_PAGE_SIZE / 8; i += 4)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
			return false;
	return true;
}

/* End (exclusive) of the highest RAM below `limit`, clipped to `limit`; 0 if none. */
uint64_t guest_mem_end_below(const struct guest_mem *mem, uint64_t limit);

#endif
