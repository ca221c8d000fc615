/* SPDX-License-Identifier: MIT */
/*
 * The guard of a --lazy restore (migration/lazy_guard.c): a read lease on
 * the snapshot file, and on its break (someone opens the file to write it)
 * guest RAM taken off the file into the guest's memfds before the writer
 * may go on. Touches the VM's RAM mappings, its pause and its event loop.
 */
#ifndef MIGRATION_LAZY_GUARD_H
#define MIGRATION_LAZY_GUARD_H

struct vm;
struct lazy_guard;

/* Main thread, on the lease's break: make the VM's RAM its own (every page
 * off the file). 0, or -1 with a message. */
typedef int (*lazy_take_off_fn)(struct vm *vm, void *opaque);

/* Before any thread is created: the lease-break signal is read through a
 * signalfd, so no thread may take it the default (fatal) way. */
void lazy_guard_block_signal(void);
/* Main thread, the VM built with RAM taken lazily from `path` (open as
 * `fd`): take the lease. On its break, take_off runs (NULL: the --lazy=mmap
 * one, copying the mapped file into the memfds with the guest paused), then
 * the lease goes and the guard frees itself. Without a lease, says why once
 * and returns NULL: the restore goes on unguarded. */
struct lazy_guard *lazy_guard_start(struct vm *vm, int fd, const char *path,
				    lazy_take_off_fn take_off, void *opaque);
/* Main thread: the RAM no longer depends on the file; give the lease back
 * (NULL: nothing). Not after take_off has run. */
void lazy_guard_release(struct lazy_guard *g);

#endif
