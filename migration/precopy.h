/* SPDX-License-Identifier: MIT */
/*
 * Live migration, source side: precopy over a socket (tcp:, unix:) in the
 * stream format of docs/migration-format.md. Runs on the migration thread.
 */
#ifndef MIGRATION_PRECOPY_H
#define MIGRATION_PRECOPY_H

struct migration;
struct mig_uri;

/* 0: the destination runs the guest (the source must stop). -1: failed;
 * m->keep_paused says whether the guest may resume here (before GO) or
 * must stay paused (after GO, unconfirmed). */
int precopy_migrate(struct migration *m, const struct mig_uri *u);

#endif
