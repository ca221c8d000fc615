/* SPDX-License-Identifier: MIT */
/*
 * The whole machine's state as one tree: /vm (irqchip, clock), /cpuN for
 * every vCPU, /virtioN for every virtio device. Saved with the VM paused
 * and devices quiesced; loaded into a VM built from the same machine
 * description before any vCPU runs.
 */
#ifndef MIGRATION_VMSTATE_H
#define MIGRATION_VMSTATE_H

#include <stddef.h>

#include "vmm/vm.h"

/* Pause vCPUs and quiesce devices / undo it. */
void vmstate_freeze(struct vm *vm);
void vmstate_thaw(struct vm *vm);

int vmstate_save(struct vm *vm, void **blob, size_t *len);
/* Everything but the clock; then vmstate_load_clock() just before running. */
int vmstate_load(struct vm *vm, const void *blob, size_t len);
int vmstate_load_clock(struct vm *vm, const void *blob, size_t len);

/* --inspect: one line per node with its version. */
int vmstate_print(const void *blob, size_t len);

#endif
