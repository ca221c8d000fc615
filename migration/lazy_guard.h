/* SPDX-License-Identifier: MIT */
/*
 * The guard of a --lazy restore (migration/lazy_guard.c): a read lease on
 * the snapshot file, and on its break (someone opens the file to write it)
 * guest RAM copied off the file into the guest's memfds before the writer
 * may go on. Touches the VM's RAM mappings, its pause and its event loop.
 */
#ifndef MIGRATION_LAZY_GUARD_H
#define MIGRATION_LAZY_GUARD_H

struct vm;

/* Before any thread is created: the lease-break signal is read through a
 * signalfd, so no thread may take it the default (fatal) way. */
void lazy_guard_block_signal(void);
/* Main thread, the VM built with RAM mapped from `path` (open as `fd`):
 * take the lease. Without one, says why once and returns 0 all the same. */
int lazy_guard_start(struct vm *vm, int fd, const char *path);

#endif
