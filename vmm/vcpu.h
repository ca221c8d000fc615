/* SPDX-License-Identifier: MIT */
/*
 * vCPU threads: create the KVM vCPU, run KVM_RUN in a loop, dispatch exits
 * to the buses, honour stop and pause requests from the main thread.
 */
#ifndef VMM_VCPU_H
#define VMM_VCPU_H

#include "vmm/vm.h"

int vcpu_create(struct vm *vm, unsigned id);
void vcpu_destroy(struct vcpu *vcpu);
int vcpu_start(struct vcpu *vcpu);
/* Make the vCPU leave KVM_RUN soon (safe from any thread). */
void vcpu_kick(struct vcpu *vcpu);
/* Install the no-op kick signal handler; once per process. */
int vcpu_signals_init(void);

#endif
