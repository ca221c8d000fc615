/* SPDX-License-Identifier: MIT */
/*
 * Applying REC_RAM batches (docs/migration-format.md, "Live migration
 * stream") to guest RAM on the destination. Pure: it needs a guest_mem and
 * nothing else (no KVM), so the fuzzer drives it directly.
 *
 * A batch is checked whole before a byte is written: exact payload length
 * for its entries, every address page-aligned and inside guest RAM. A
 * refused batch leaves guest RAM as it was; only the host running out of
 * memory while writing can stop a batch halfway (the guest never runs then).
 */
#ifndef MIGRATION_RAM_BATCH_H
#define MIGRATION_RAM_BATCH_H

#include <stdint.h>

#include "vmm/guest_mem.h"

struct ram_loader {
	struct guest_mem *mem;
	/* One bit per page that received data: a later zero entry must clear
	 * it. Other pages are still the memfd's untouched zeroes, and writing
	 * zeroes there would only allocate memory. */
	uint64_t *sent[GUEST_MEM_MAX_REGIONS];
	uint64_t pages_data;    /* entries with data, resends included */
	uint64_t pages_zero;    /* entries with RAM_ENTRY_ZERO */
	char error[160];        /* why ram_batch_apply() failed */
};

/* 0, or -1 (printed: out of memory). `mem` must outlive the loader. */
int ram_loader_init(struct ram_loader *l, struct guest_mem *mem);
void ram_loader_free(struct ram_loader *l);

/* Check, then apply one REC_RAM payload. 0, or -1 with one message naming
 * what is wrong. */
int ram_batch_load(struct ram_loader *l, const void *payload, uint64_t len);

/* The two halves, for a reader that checks batches as they arrive and has
 * them applied on another thread (ram_pipe.h). check: 0, or -1 (printed);
 * touches nothing. apply: only on a checked payload; 0, or -1 with the
 * reason in l->error (not printed: it may run on any thread). */
int ram_batch_check(const struct ram_loader *l, const void *payload, uint64_t len);
int ram_batch_apply(struct ram_loader *l, const void *payload);

#endif
