/* SPDX-License-Identifier: MIT */
/*
 * The machine description, first record of every stream: vCPUs, RAM
 * layout, TSC rate and the virtio devices in window order with the host
 * backends they used. The destination builds the same machine from it,
 * but opens a host resource only when its own command line confirms it
 * (--disk/--net in the same order) or accepts the stream's (--accept-backends).
 */
#ifndef MIGRATION_MACHINE_H
#define MIGRATION_MACHINE_H

#include <stddef.h>

#include "vmm/vm.h"

#define MACHINE_VERSION 1

/* Serialise the running VM's description (an FDT blob, malloc'd). */
int machine_save(const struct vm *vm, void **blob, size_t *len);

/*
 * Parse `blob` into `out`, a vm_config for vm_create(): the machine's shape
 * from the stream, the backends from `cmdline` (its disks/nets override the
 * stream's in order) or, with `accept`, from the stream. String fields of
 * `out` point into `blob` or `cmdline`: keep both alive. -1 with one clear
 * message on anything missing, malformed or unconfirmed.
 */
int machine_load(const void *blob, size_t len, const struct vm_config *cmdline, bool accept,
		 struct vm_config *out);

/* Human-readable description for --inspect. */
int machine_print(const void *blob, size_t len);

#endif
