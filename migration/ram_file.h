/* SPDX-License-Identifier: MIT */
/*
 * Guest RAM in a file with the fixed-offset layout: every page of region r
 * lives at ram_offset + (sum of earlier regions' sizes) + page offset, zero
 * pages are holes, so the file never exceeds RAM plus state. Integrity: one
 * CRC per chunk of RAM_CHUNK bytes, defined as CRC32C over the chunk's
 * per-page CRC32Cs (u32 LE), so a hole costs a constant, not a read.
 *
 * Zero pages are found without touching untouched memory: SEEK_DATA and
 * SEEK_HOLE on the region's memfd skip what was never written; only pages
 * inside data extents are read (and dropped as holes if all zero).
 */
#ifndef MIGRATION_RAM_FILE_H
#define MIGRATION_RAM_FILE_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/guest_mem.h"

#define RAM_CHUNK         (2ULL << 20)
#define RAM_FILE_OFFSET   (2ULL << 20)     /* 2 MiB: huge-page aligned for --lazy */

struct ram_stats {
	uint64_t pages_present;
	uint64_t pages_zero;
	uint64_t bytes_written;
	/* Reads: pages in the file's data extents (SEEK_DATA), zero or not.
	 * A save counts those (on filesystems without holes, every page it
	 * wrote around); pages_present counts the non-zero ones. */
	uint64_t pages_extent;
};

/* Number of chunks covering `mem`. */
uint64_t ram_nr_chunks(const struct guest_mem *mem);
/* Byte offset within the RAM area of region `i`. */
uint64_t ram_region_offset(const struct guest_mem *mem, unsigned i);
/* One bitmap per region (a bit per page) into one over all RAM, regions in
 * order (the layout of REC_POSTCOPY and REC_WORKING_SET); map must be
 * zeroed and hold ram_size / 4096 bits. Returns the bits set. */
uint64_t ram_bits_to_map(const struct guest_mem *mem, uint64_t *const *bits, uint64_t *map);

/* Write every non-zero page of `mem` to fd at ram_offset + layout, and fill
 * crcs[ram_nr_chunks()] . Pages the file already has as data but that are
 * now zero get their hole punched (the file may be reused). 0 or -1. */
int ram_file_write(int fd, uint64_t ram_offset, const struct guest_mem *mem, uint32_t *crcs,
		   struct ram_stats *st);

/* Live saves: write the pages set in bits[region] (clearing them) at their
 * fixed offsets, punching holes for pages that became zero, and mark their
 * chunks in chunk_dirty (one bit per chunk). */
int ram_file_write_dirty(int fd, uint64_t ram_offset, const struct guest_mem *mem,
			 uint64_t **bits, uint64_t *chunk_dirty, struct ram_stats *st);
/* With the VM paused: recompute the CRCs of the chunks marked dirty. */
void ram_file_update_crcs(const struct guest_mem *mem, const uint64_t *chunk_dirty,
			  uint32_t *crcs);

/* The same chunk CRCs from guest memory alone, writing nothing: the RAM
 * digest tests compare between source and destination. */
int ram_compute_crcs(const struct guest_mem *mem, uint32_t *crcs, struct ram_stats *st);

/* Read the RAM area into `mem` (whose pages must be untouched zeros),
 * checking every chunk CRC unless `crcs` is NULL. 0 or -1 (message). */
int ram_file_read(int fd, uint64_t ram_offset, struct guest_mem *mem, const uint32_t *crcs,
		  struct ram_stats *st);

/* Map the RAM area of fd copy-on-write over mem's regions (--lazy). */
int ram_file_map(int fd, uint64_t ram_offset, struct guest_mem *mem);

/* Count pages present in the file's RAM area (SEEK_DATA), for --inspect. */
uint64_t ram_file_pages_present(int fd, uint64_t ram_offset, uint64_t ram_length);

#endif
