// SPDX-License-Identifier: MIT
/*
 * The payload is hostile: every count and address is checked against the
 * payload's real length and guest RAM before anything is copied, with
 * overflow-free arithmetic (count is bounded first, so 8 * count and
 * 4096 * count fit easily in 64 bits).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "migration/ram_batch.h"
#include "migration/stream.h"
#include "vmm/log.h"

#define PAGE            GUEST_PAGE_SIZE
#define ENTRY_ADDR_MASK (~(PAGE - 1))

int ram_loader_init(struct ram_loader *l, struct guest_mem *mem)
{
	memset(l, 0, sizeof(*l));
	l->mem = mem;
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		uint64_t pages = mem->regions[i].size / PAGE;

		/* calloc of this size is fresh zero pages: no cost until a bit is set. */
		l->sent[i] = calloc((pages + 63) / 64, sizeof(uint64_t));
		if (!l->sent[i]) {
			pr_err("out of memory for the incoming RAM bitmap");
			ram_loader_free(l);
			return -1;
		}
	}
	return 0;
}

void ram_loader_free(struct ram_loader *l)
{
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
		free(l->sent[i]);
		l->sent[i] = NULL;
	}
}

static uint64_t entry_at(const uint8_t *entries, uint32_t i)
{
	uint64_t e;

	memcpy(&e, entries + (size_t)i * 8, 8);    /* the payload has no alignment promise */
	return e;
}

/* Every entry names a whole page of guest RAM; returns how many carry data. */
static int check_entries(const struct ram_loader *l, const uint8_t *entries, uint32_t count,
			 uint64_t *ndata)
{
	*ndata = 0;
	for (uint32_t i = 0; i < count; i++) {
		uint64_t e = entry_at(entries, i), gpa = e & ENTRY_ADDR_MASK;

		if ((e & ~ENTRY_ADDR_MASK) & ~RAM_ENTRY_ZERO) {
			pr_err("ram record: entry %u: address 0x%llx is not page-aligned", i,
			       (unsigned long long)e);
			return -1;
		}
		if (!guest_mem_ptr(l->mem, gpa, PAGE)) {
			pr_err("ram record: entry %u: page 0x%llx is outside guest RAM", i,
			       (unsigned long long)gpa);
			return -1;
		}
		if (!(e & RAM_ENTRY_ZERO))
			(*ndata)++;
	}
	return 0;
}

static int check_batch(const struct ram_loader *l, const uint8_t *p, uint64_t len,
		       struct ram_batch_hdr *h, uint64_t *ndata)
{
	uint64_t need;

	if (len < sizeof(*h)) {
		pr_err("ram record: %llu bytes, too short for its header", (unsigned long long)len);
		return -1;
	}
	memcpy(h, p, sizeof(*h));
	if (h->flags) {
		pr_err("ram record: unknown flags 0x%x", h->flags);
		return -1;
	}
	if (h->count > RAM_BATCH_MAX_PAGES || len < sizeof(*h) + 8ULL * h->count) {
		pr_err("ram record: %u entries do not fit in %llu bytes", h->count,
		       (unsigned long long)len);
		return -1;
	}
	if (check_entries(l, p + sizeof(*h), h->count, ndata) < 0)
		return -1;
	need = sizeof(*h) + 8ULL * h->count + PAGE * *ndata;
	if (len != need) {
		pr_err("ram record: %llu bytes, its %u entries (%llu with data) need %llu",
		       (unsigned long long)len, h->count, (unsigned long long)*ndata,
		       (unsigned long long)need);
		return -1;
	}
	return 0;
}

static void load_page(struct ram_loader *l, uint64_t e, const uint8_t **data)
{
	uint64_t gpa = e & ENTRY_ADDR_MASK;
	const struct mem_region *r = guest_mem_region(l->mem, gpa);
	unsigned ri = (unsigned)(r - l->mem->regions);
	uint64_t page = (gpa - r->gpa) / PAGE, bit = 1ULL << (page % 64);
	uint8_t *dst = guest_mem_ptr(l->mem, gpa, PAGE);

	if (e & RAM_ENTRY_ZERO) {
		if (l->sent[ri][page / 64] & bit) {
			memset(dst, 0, PAGE);
			l->sent[ri][page / 64] &= ~bit;
		}
		l->pages_zero++;
		return;
	}
	memcpy(dst, *data, PAGE);
	*data += PAGE;
	l->sent[ri][page / 64] |= bit;
	l->pages_data++;
}

/*
 * Guest RAM is shmem: faulting its pages in one at a time during the copy
 * costs more than the copy. Allocate each run of consecutive data pages in
 * one call first (the entries are already validated).
 */
static void populate_runs(struct ram_loader *l, const uint8_t *entries, uint32_t count)
{
	uint64_t start = 0, len = 0;

	for (uint32_t i = 0; i <= count; i++) {
		uint64_t e = i < count ? entry_at(entries, i) : RAM_ENTRY_ZERO;
		uint64_t gpa = e & ENTRY_ADDR_MASK;

		if (!(e & RAM_ENTRY_ZERO) && len && gpa == start + len &&
		    guest_mem_ptr(l->mem, start, len + PAGE)) {
			len += PAGE;
			continue;
		}
		if (len >= 16 * PAGE)   /* small runs: the faults are cheap enough */
			madvise(guest_mem_ptr(l->mem, start, len), len, MADV_POPULATE_WRITE);
		start = gpa;
		len = (e & RAM_ENTRY_ZERO) ? 0 : PAGE;
	}
}

int ram_batch_load(struct ram_loader *l, const void *payload, uint64_t len)
{
	const uint8_t *p = payload, *data;
	struct ram_batch_hdr h;
	uint64_t ndata;

	if (check_batch(l, p, len, &h, &ndata) < 0)
		return -1;
	populate_runs(l, p + sizeof(h), h.count);
	data = p + sizeof(h) + 8ULL * h.count;
	for (uint32_t i = 0; i < h.count; i++)
		load_page(l, entry_at(p + sizeof(h), i), &data);
	return 0;
}
