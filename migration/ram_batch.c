// SPDX-License-Identifier: MIT
/*
 * The payload is hostile: every count and address is checked against the
 * payload's real length and guest RAM before anything is copied, with
 * overflow-free arithmetic (count is bounded first, so 8 * count and
 * 4096 * count fit easily in 64 bits).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/*
 * Guest RAM is shmem, and mapping fresh shmem pages one fault at a time
 * costs more than the copy: runs of data pages go in with guest_mem_load
 * (pwrite into the memfd); KVM maps them when the guest touches them.
 */
static int write_run(struct ram_loader *l, uint64_t gpa, const uint8_t *data, uint64_t len)
{
	const struct mem_region *r = guest_mem_region(l->mem, gpa);

	if (guest_mem_load(r, gpa - r->gpa, data, len) == 0)
		return 0;
	/* Not printed here: this may run on the applier thread. */
	snprintf(l->error, sizeof(l->error), "ram record: writing guest RAM at 0x%llx: %s",
		 (unsigned long long)gpa, strerror(errno));
	return -1;
}

/* Track which pages hold data, so a later zero entry clears only those. */
static bool mark_page(struct ram_loader *l, uint64_t gpa, bool data)
{
	const struct mem_region *r = guest_mem_region(l->mem, gpa);
	unsigned ri = (unsigned)(r - l->mem->regions);
	uint64_t page = (gpa - r->gpa) / PAGE, bit = 1ULL << (page % 64);
	bool had = l->sent[ri][page / 64] & bit;

	if (data)
		l->sent[ri][page / 64] |= bit;
	else
		l->sent[ri][page / 64] &= ~bit;
	return had;
}

static int zero_page(struct ram_loader *l, uint64_t gpa)
{
	static const uint8_t zeroes[PAGE];

	l->pages_zero++;
	/* Untouched pages are the memfd's zeroes already; writing would allocate. */
	return mark_page(l, gpa, false) ? write_run(l, gpa, zeroes, PAGE) : 0;
}

/* Entries are validated: write each run of consecutive data pages at once. */
static int load_entries(struct ram_loader *l, const uint8_t *entries, uint32_t count,
			const uint8_t *data)
{
	uint64_t start = 0, len = 0;

	for (uint32_t i = 0; i <= count; i++) {
		uint64_t e = i < count ? entry_at(entries, i) : RAM_ENTRY_ZERO;
		uint64_t gpa = e & ENTRY_ADDR_MASK;

		if (!(e & RAM_ENTRY_ZERO) && len && gpa == start + len &&
		    guest_mem_ptr(l->mem, start, len + PAGE)) {
			len += PAGE;
			mark_page(l, gpa, true);
			continue;
		}
		if (len && write_run(l, start, data, len) < 0)
			return -1;
		data += len;
		l->pages_data += len / PAGE;
		len = 0;
		if (i == count)
			break;
		if (e & RAM_ENTRY_ZERO) {
			if (zero_page(l, gpa) < 0)
				return -1;
			continue;
		}
		start = gpa;
		len = PAGE;
		mark_page(l, gpa, true);
	}
	return 0;
}

int ram_batch_check(const struct ram_loader *l, const void *payload, uint64_t len)
{
	struct ram_batch_hdr h;
	uint64_t ndata;

	return check_batch(l, payload, len, &h, &ndata);
}

int ram_batch_apply(struct ram_loader *l, const void *payload)
{
	const uint8_t *p = payload;
	struct ram_batch_hdr h;

	memcpy(&h, p, sizeof(h));
	return load_entries(l, p + sizeof(h), h.count, p + sizeof(h) + 8ULL * h.count);
}

int ram_batch_load(struct ram_loader *l, const void *payload, uint64_t len)
{
	if (ram_batch_check(l, payload, len) < 0)
		return -1;
	if (ram_batch_apply(l, payload) < 0) {
		pr_err("%s", l->error);
		return -1;
	}
	return 0;
}
