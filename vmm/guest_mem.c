// SPDX-License-Identifier: MIT
/*
 * Guest RAM as memfds. x86 layout: RAM from 0 up to the MMIO hole at 3 GiB,
 * the rest from 4 GiB. Pages are not touched here: an untouched memfd page
 * costs nothing and reads as zero, which migration relies on (SEEK_DATA).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "vmm/guest_mem.h"
#include "vmm/log.h"

static uint64_t bitmap_words(uint64_t size)
{
	return (size / GUEST_PAGE_SIZE + 63) / 64;
}

static int region_map(struct mem_region *r, uint64_t gpa, uint64_t size, unsigned idx)
{
	char name[32];

	snprintf(name, sizeof(name), "minivmm-ram%u", idx);
	r->memfd = memfd_create(name, MFD_CLOEXEC);
	if (r->memfd < 0) {
		pr_err("memfd_create: %s", strerror(errno));
		return -1;
	}
	if (ftruncate(r->memfd, (off_t)size) < 0) {
		pr_err("cannot size guest RAM (%llu MiB): %s",
		       (unsigned long long)(size >> 20), strerror(errno));
		goto err_close;
	}
	r->hva = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
		      r->memfd, 0);
	if (r->hva == MAP_FAILED) {
		pr_err("cannot map guest RAM (%llu MiB): %s",
		       (unsigned long long)(size >> 20), strerror(errno));
		goto err_close;
	}
	/* Large pages where the host allows them: fewer TLB misses for the guest. */
	madvise(r->hva, size, MADV_HUGEPAGE);
	r->vmm_dirty = calloc(bitmap_words(size), sizeof(uint64_t));
	if (!r->vmm_dirty) {
		pr_err("out of memory for the dirty bitmap");
		munmap(r->hva, size);
		goto err_close;
	}
	r->gpa = gpa;
	r->size = size;
	r->slot = idx;
	return 0;
err_close:
	close(r->memfd);
	r->memfd = -1;
	return -1;
}

uint64_t guest_mem_host_limit(void)
{
	struct sysinfo si;

	if (sysinfo(&si) < 0)
		return UINT64_MAX;
	return ((uint64_t)si.totalram + si.totalswap) * si.mem_unit;
}

int guest_mem_init(struct guest_mem *mem, uint64_t ram_size)
{
	uint64_t low = ram_size < LAYOUT_MMIO_HOLE ? ram_size : LAYOUT_MMIO_HOLE;

	memset(mem, 0, sizeof(*mem));
	if (ram_size == 0 || ram_size % GUEST_PAGE_SIZE) {
		pr_err("guest RAM size must be a non-zero multiple of 4 KiB");
		return -1;
	}
	if (region_map(&mem->regions[0], 0, low, 0) < 0)
		return -1;
	mem->nr_regions = 1;
	if (ram_size > low) {
		if (region_map(&mem->regions[1], LAYOUT_HIGH_RAM, ram_size - low, 1) < 0)
			goto err;
		mem->nr_regions = 2;
	}
	mem->ram_size = ram_size;
	return 0;
err:
	guest_mem_destroy(mem);
	return -1;
}

void guest_mem_destroy(struct guest_mem *mem)
{
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		struct mem_region *r = &mem->regions[i];

		munmap(r->hva, r->size);
		close(r->memfd);
		free(r->vmm_dirty);
		free(r->touched);
	}
	mem->nr_regions = 0;
}

const struct mem_region *guest_mem_region(const struct guest_mem *mem, uint64_t gpa)
{
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		const struct mem_region *r = &mem->regions[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return r;
	}
	return NULL;
}

void *guest_mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	const struct mem_region *r = guest_mem_region(mem, gpa);

	if (!r || len > r->size - (gpa - r->gpa))
		return NULL;
	return r->hva + (gpa - r->gpa);
}

int guest_mem_write(struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len)
{
	void *dst = guest_mem_ptr(mem, gpa, len);

	if (!dst)
		return -1;
	memcpy(dst, src, len);
	guest_mem_mark_dirty(mem, gpa, len);
	return 0;
}

int guest_mem_load(const struct mem_region *r, uint64_t off, const void *src, uint64_t len)
{
	const uint8_t *p = src;

	if (off > r->size || len > r->size - off) {
		errno = EINVAL;
		return -1;
	}
	if (r->file_backed) {
		memcpy(r->hva + off, p, len);
		return 0;
	}
	while (len) {
		ssize_t n = pwrite(r->memfd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len)
{
	const void *src = guest_mem_ptr(mem, gpa, len);

	if (!src)
		return -1;
	memcpy(dst, src, len);
	return 0;
}

void guest_mem_mark_dirty(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	const struct mem_region *r = guest_mem_region(mem, gpa);
	uint64_t first, last;

	if (!r || !len)
		return;
	if (len > r->size - (gpa - r->gpa))
		len = r->size - (gpa - r->gpa);
	first = (gpa - r->gpa) >> GUEST_PAGE_SHIFT;
	last = (gpa - r->gpa + len - 1) >> GUEST_PAGE_SHIFT;
	for (uint64_t p = first; p <= last; p++) {
		uint64_t bit = 1ULL << (p % 64);

		/* A plain load first: most marks hit pages already marked. */
		if (!(atomic_load_explicit(&r->vmm_dirty[p / 64], memory_order_relaxed) & bit))
			atomic_fetch_or(&r->vmm_dirty[p / 64], bit);
	}
}

bool guest_mem_page_dirty(const struct mem_region *r, uint64_t page)
{
	return atomic_load(&r->vmm_dirty[page / 64]) & (1ULL << (page % 64));
}

uint64_t guest_mem_harvest_dirty(struct mem_region *r, uint64_t *out)
{
	uint64_t n = 0, words = bitmap_words(r->size);

	for (uint64_t i = 0; i < words; i++) {
		uint64_t v;

		if (!atomic_load_explicit(&r->vmm_dirty[i], memory_order_relaxed))
			continue;
		v = atomic_exchange(&r->vmm_dirty[i], 0);
		out[i] |= v;
		n += (uint64_t)__builtin_popcountll(v);
	}
	return n;
}

uint64_t guest_mem_end_below(const struct guest_mem *mem, uint64_t limit)
{
	uint64_t end = 0;

	for (unsigned i = 0; i < mem->nr_regions; i++) {
		const struct mem_region *r = &mem->regions[i];
		uint64_t top = r->gpa + r->size;

		if (r->gpa >= limit)
			continue;
		if (top > limit)
			top = limit;
		if (top > end)
			end = top;
	}
	return end;
}
