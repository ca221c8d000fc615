/* SPDX-License-Identifier: MIT */
/*
 * Postcopy's destination, inside (postcopy_dst.c: faults and pages;
 * postcopy_recover.c: a new link after a broken one). Not for other users:
 * they have postcopy_dst.h.
 */
#ifndef MIGRATION_POSTCOPY_DST_PRIV_H
#define MIGRATION_POSTCOPY_DST_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "migration/stream_rx.h"
#include "vmm/guest_mem.h"

#define PAGE 4096ULL

struct uffd_ram;
struct vm;

struct postcopy_dst {
	struct vm *vm;
	struct stream_rx *rx;
	struct uffd_ram *uffd;
	_Atomic uint64_t *needed[GUEST_MEM_MAX_REGIONS];        /* bit per page still missing */
	uint64_t base[GUEST_MEM_MAX_REGIONS];                   /* first page's index in all RAM */
	_Atomic uint64_t left;
	_Atomic uint32_t *asked_us;     /* per page: when it was requested (+1), 0: not */
	uint64_t t0_us;
	uint64_t session;               /* the switch's: a recovery must name it */
	int urgent_fd;                  /* the source's second connection, or -1 */
	struct tls_link *urgent_tls;    /* ...its TLS session, or NULL */
	struct tls_creds *creds;        /* --tls-creds: a recovery's connection too */
	struct tls_link *recovery_tls;  /* the recovery's session, or NULL */
	pthread_t urgent_thread;
	bool urgent_started;
	pthread_mutex_t fig_lock;       /* the fault figures: two receive threads */
	pthread_t thread;
	bool started;                   /* receiving began (GO came) */
	bool joinable;                  /* thread needs a join */
	int lfd;                        /* migrate-recover's listening socket, or -1 */
	_Atomic bool stopping;
	_Atomic bool failed;
	uint8_t *rxbuf;
	/* Fault figures, on the receive thread. */
	uint32_t *lat_us;
	uint64_t nlat, block_us;
	_Atomic uint64_t faults;
	_Atomic uint64_t pages_placed;
};

uint64_t pcd_mono_us(void);
/* Page `page` of region i is still at the source. */
bool pcd_is_needed(struct postcopy_dst *pd, unsigned i, uint64_t page);
/* The link broke: status postcopy-paused, said once (not while stopping). */
void pcd_paused(struct postcopy_dst *pd, const char *why);
/* Pages from rx's connection until every one is in or the link breaks. */
void pcd_receive_pages(struct postcopy_dst *pd);

#endif
