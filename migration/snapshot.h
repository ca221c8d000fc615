/* SPDX-License-Identifier: MIT */
/*
 * file: snapshots (docs/migration-format.md, "File layout"). Saving writes
 * to PATH.tmp-PID in the same directory, syncs it, renames it into place
 * and syncs the directory: a failed or cancelled save never leaves a file
 * that looks complete. Restoring builds the machine from the file alone.
 */
#ifndef MIGRATION_SNAPSHOT_H
#define MIGRATION_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration/stream.h"
#include "vmm/vm.h"

struct migration;

/* Migration thread: save the running VM to `path`. On failure the VM runs
 * on as before. */
int snapshot_save(struct migration *m, const char *path);

/* Everything read from a snapshot file before the VM exists. */
struct snapshot {
	int fd;
	char path[4096];
	struct chan chan;
	struct stream_header hdr;
	struct record machine, ram_index, state, end;
	struct record working_set;      /* optional: payload NULL when the file has none */
	struct stream_end totals;
};

/* Open and check a snapshot: header, then every record after the RAM. */
int snapshot_open(struct snapshot *s, const char *path);
void snapshot_close(struct snapshot *s);
/* Whether the file's RAM area fits vm's RAM layout. 0, or -1 with a message. */
int snapshot_check_ram(const struct snapshot *s, const struct vm *vm);
/* Fill guest RAM (eagerly with CRC checks, or mapped copy-on-write). */
int snapshot_load_ram(struct snapshot *s, struct vm *vm, bool lazy);
/* The working set's bitmap if the file has one that fits vm (one bit per
 * page of all RAM), else NULL (said why, when it does not fit). */
const uint64_t *snapshot_working_set(const struct snapshot *s, const struct vm *vm,
				     uint64_t *count);
/* minivmm --inspect file:PATH */
int snapshot_inspect(const char *path);

#endif
