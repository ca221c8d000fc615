/* SPDX-License-Identifier: MIT */
/*
 * Guest RAM served on demand through userfaultfd (migration/uffd.c).
 *
 * The regions of a guest_mem are registered for MISSING faults; a fault
 * thread answers every fault (a vCPU's, KVM's own access to guest memory,
 * a device thread's, the main thread's) with the page its fetch callback
 * returns, placed atomically (UFFDIO_COPY, or UFFDIO_ZEROPAGE for a zero
 * page), which wakes whoever waits on it. Other threads may place pages at
 * any time with uffd_ram_place(): a page already present is never
 * overwritten. The caller owns the regions' mappings and must not write
 * pages into the memfds behind them while registered (no fault would hear
 * of it). Touches only the mappings it is given and its own threads.
 */
#ifndef MIGRATION_UFFD_H
#define MIGRATION_UFFD_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/guest_mem.h"

struct uffd_ram;

/* Fill buf with `len` bytes of region r's RAM from byte offset `off` (page
 * aligned). Called on the fault thread only. 0, or -1 with a message; or 1:
 * the pages will come later through uffd_ram_place() (a postcopy page
 * request), which wakes the faulting thread then. */
typedef int (*uffd_fetch_fn)(void *opaque, const struct mem_region *r, uint64_t off, void *buf,
			     size_t len);
/* The fault thread could not serve a fault (fetch or placement failed): the
 * guest cannot go on. Called once, on the fault thread. */
typedef void (*uffd_fail_fn)(void *opaque);

struct uffd_stats {
	uint64_t faults;                /* faults answered */
	uint64_t fault_p50_us;          /* fault read to page placed */
	uint64_t fault_p99_us;
	uint64_t pages_faulted;         /* placed by the fault thread */
	uint64_t pages_placed;          /* placed by uffd_ram_place() */
};

/* Register every region of mem and start the fault thread. Fault-ins are
 * `fault_pages` pages (a power of two, at least 1), aligned, clipped to
 * the region. NULL with a message (no userfaultfd here, say why). */
struct uffd_ram *uffd_ram_start(struct guest_mem *mem, unsigned fault_pages, uffd_fetch_fn fetch,
				uffd_fail_fn fail, void *opaque);
/* Place len bytes of buf at region r, offset off (both page aligned), page
 * runs at a time, skipping pages already present. Pages placed counted.
 * Any thread. 0, or -1 with a message. */
int uffd_ram_place(struct uffd_ram *u, const struct mem_region *r, uint64_t off, const void *buf,
		   size_t len);
/* The calling thread is on the path of a blocked guest (fault thread,
 * requested-page readers): ahead of busy vCPUs in the scheduler, real-time
 * FIFO where the host lets us, else the best a plain thread may ask. */
void uffd_thread_favour(void);
/* p50 and p99 of n latency samples (sorted in place); 0 for none. */
void uffd_latency_percentiles(uint32_t *us, uint64_t n, uint64_t *p50, uint64_t *p99);
/* Faults answered so far. Any thread. */
uint64_t uffd_ram_faults(struct uffd_ram *u);
/* Unregister the regions (missing pages read as zero from then on: call it
 * once every page that is not zero is placed), stop the fault thread, fill
 * st, free u. Not from the fault thread. */
void uffd_ram_stop(struct uffd_ram *u, struct uffd_stats *st);

#endif
