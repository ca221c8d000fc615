/* SPDX-License-Identifier: MIT */
/*
 * Postcopy, the source's side (migration/postcopy_src.c). precopy.c asks
 * at every round whether to switch; at the switch its stop-and-copy sends
 * the list of pages the destination lacks instead of the pages; after
 * RUNNING the source only serves those pages until the destination says
 * every one is in place. Touches the sender (ram_sender.h), the migration's
 * status and statistics, and nothing of the VM but its (frozen) RAM.
 */
#ifndef MIGRATION_POSTCOPY_SRC_H
#define MIGRATION_POSTCOPY_SRC_H

#include <stdbool.h>
#include <stdint.h>

#include "migration/ram_sender.h"

struct mig_uri;

/* Precopy round `round`: switch now? (migrate-start-postcopy was given, or
 * postcopy-auto and the rates say precopy would need throttling.) Says why
 * in the log and the statistics, and sets m->postcopy. */
bool postcopy_wanted(struct sender *s, unsigned round, uint64_t dirty_pps, uint64_t send_bps,
		     uint64_t expected_ms);
#define POSTCOPY_MID_PASS (~0U)         /* `round` for a switch during the first pass */
/* The first pass stopped at s->scan_region/scan_off for the switch: every
 * page with data past that point goes into bits (the destination lacks it). */
void postcopy_rest_of_pass(struct sender *s, uint64_t **bits);
/* VM frozen, `bits` the pages dirtied since they were sent (and never-sent
 * ones): the REC_POSTCOPY record. `bits` stays: it is what postcopy_serve
 * sends. 0 or -1. */
int postcopy_send_switch(struct sender *s, uint64_t **bits);
/* After RUNNING: serve requests first, push the rest, until the
 * destination's COMPLETE (0). A broken link: the status becomes
 * postcopy-paused, the VM stays frozen with every page, -1. */
int postcopy_serve(struct sender *s, uint64_t **bits);
/* The migration thread for `migrate` with resume: connect to the
 * destination's migrate-recover address, name the session, take its list
 * of missing pages and serve them. 0 completed; -1 still paused (said). */
int postcopy_resume(struct migration *m, const struct mig_uri *u);

#endif
