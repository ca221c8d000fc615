/* SPDX-License-Identifier: MIT */
/*
 * Postcopy, the destination's side (migration/postcopy_dst.c): guest RAM
 * the source still holds is fetched on fault, over the return path, while
 * the source pushes the rest. Touches the VM's RAM (holes punched, pages
 * placed through userfaultfd), the return path of the incoming stream
 * (under its send lock), the VM's migration status and statistics, and
 * vm_request_stop() when a page cannot be placed.
 */
#ifndef MIGRATION_POSTCOPY_DST_H
#define MIGRATION_POSTCOPY_DST_H

#include <stddef.h>

#include "migration/stream_rx.h"

struct vm;
struct postcopy_dst;
struct tls_link;
struct tls_creds;

/* After the end record, before READY, nothing running: drop the pages the
 * switch record names (they are stale here) and register RAM for faults.
 * NULL with a message. */
struct postcopy_dst *postcopy_dst_prepare(struct vm *vm, struct stream_rx *rx);
/* After GO: start receiving pages on rx's connection and on urgent_fd (the
 * source's second connection, for requested pages; -1 if none), which are
 * ours from now on (closed when postcopy ends). 0 or -1 (printed). */
int postcopy_dst_start(struct postcopy_dst *pd, int urgent_fd, struct tls_link *urgent_tls,
		       struct tls_creds *creds);
/* migrate-recover (main thread, postcopy paused): listen on uri (the
 * address bound goes to `bound`) for the source's resume. 0, or -1 with
 * `err` filled. */
int postcopy_dst_recover(struct postcopy_dst *pd, const char *uri, char *bound, size_t blen,
			 char *err, size_t errlen);
/* The VM stops (main thread, before vCPUs are joined): stop receiving and
 * unregister RAM, so a vCPU blocked on a page that will never come wakes.
 * Also frees a postcopy that never started. Safe on NULL. */
void postcopy_dst_stop(struct postcopy_dst *pd);

#endif
