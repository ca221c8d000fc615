/* SPDX-License-Identifier: MIT */
/*
 * --lazy=uffd: a snapshot restored through userfaultfd (migration/lazy_uffd.c).
 * The guest's RAM stays its own memfds; pages come from the snapshot file
 * when first touched (migration/uffd.c) and from a push thread that reads
 * the file's data extents in address order. When the push is done the
 * regions are unregistered and the VM no longer depends on the file.
 * Touches the VM's RAM regions (their file_backed flag), its event loop,
 * and vm_request_stop() when a page cannot be read.
 */
#ifndef MIGRATION_LAZY_UFFD_H
#define MIGRATION_LAZY_UFFD_H

#include <stdint.h>

struct vm;
struct lazy_uffd;

/* Main thread, RAM untouched and before KVM or any device reads it:
 * register RAM and start serving faults from fd (RAM area at ram_offset).
 * NULL with a message. */
struct lazy_uffd *lazy_uffd_start(struct vm *vm, int fd, uint64_t ram_offset, const char *path);
/* Main thread, before any vCPU runs: bring in the pages set in `map` (one
 * bit per page of all RAM: the snapshot's working set) now, in address
 * order, large reads at a time. 0, or -1 with a message. */
int lazy_uffd_prefetch(struct lazy_uffd *lu, const uint64_t *map, uint64_t count);
/* Main thread, the VM's state loaded: start the push and guard the file. */
int lazy_uffd_push(struct lazy_uffd *lu);

#endif
