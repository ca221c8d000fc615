/* SPDX-License-Identifier: MIT */
/*
 * Dirty page tracking for live migration. KVM's dirty ring
 * (KVM_CAP_DIRTY_LOG_RING_ACQ_REL, else KVM_CAP_DIRTY_LOG_RING) is enabled
 * when the VM is created, before any vCPU exists; logging itself
 * (KVM_MEM_LOG_DIRTY_PAGES on the RAM slots) is on only while a migration
 * runs. Without a ring (unsupported, or --dirty-ring 0) the bitmap
 * interface (KVM_GET_DIRTY_LOG) serves.
 *
 * Harvesting moves what KVM logged, and the VMM's own device-write bitmap,
 * into the tracker's bitmaps and re-arms logging (KVM_RESET_DIRTY_RINGS /
 * GET_DIRTY_LOG clears) BEFORE the caller copies any page, so a write that
 * lands after the harvest is logged again. It is done on demand, never on
 * a timer: by the migration thread each round, and by a harvester thread
 * (while logging is on, with a ring) that sleeps until a vCPU's ring is
 * half full (seen at its next exit) or full (KVM_EXIT_DIRTY_RING_FULL: the
 * vCPU waits for the harvest, which is also the natural throttle).
 */
#ifndef MIGRATION_DIRTY_H
#define MIGRATION_DIRTY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/guest_mem.h"

#define DIRTY_RING_DEFAULT 4096        /* entries per vCPU (64 KiB) */

struct vm;
struct vcpu;

struct dirty_tracker {
	bool ring;                      /* dirty ring (else bitmap) */
	uint32_t ring_entries;
	bool logging;                   /* KVM_MEM_LOG_DIRTY_PAGES is on */
	pthread_mutex_t lock;           /* harvests; everything below */
	uint64_t *bits[GUEST_MEM_MAX_REGIONS];  /* harvested dirty pages */
	uint64_t harvests;
	pthread_t harvester;
	bool harvester_running;
	bool harvester_stop;
	bool wanted;                    /* a vCPU asked for a harvest */
	pthread_cond_t wake;            /* the harvester sleeps on it */
	pthread_cond_t harvested;       /* ring-full vCPUs wait on it */
};

/* VM creation: enable the ring (entries 0: no ring) before vCPUs exist. */
int dirty_ring_enable(struct vm *vm, uint32_t entries);
/* vCPU creation: map its ring. */
int dirty_ring_map_vcpu(struct vcpu *vcpu);
void dirty_ring_unmap_vcpu(struct vcpu *vcpu);

/* Turn logging on/off on every RAM slot; on clears everything logged so far. */
int dirty_log_start(struct vm *vm);
void dirty_log_stop(struct vm *vm);

/* Move everything logged since the last harvest into the tracker bitmaps
 * (KVM's log re-armed first). Returns the number of newly dirty pages. */
int64_t dirty_harvest(struct vm *vm);
/* Take region r's harvested bits into `out` (OR) and clear them. */
uint64_t dirty_take(struct vm *vm, unsigned r, uint64_t *out);

/* vCPU thread: its ring is full (KVM_EXIT_DIRTY_RING_FULL). Returns once
 * harvested (by the harvester, else right here), or stopping. */
void dirty_ring_full(struct vcpu *vcpu);
/* vCPU thread, after any exit: wake the harvester if the ring is half full. */
void dirty_ring_check_soft(struct vcpu *vcpu);

#endif
