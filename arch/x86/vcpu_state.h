/* SPDX-License-Identifier: MIT */
/*
 * Complete x86 vCPU and VM state for snapshots and migration, as nodes of
 * the self-describing state tree (migration/state.h):
 *   cpuN: regs, sregs, xsave (KVM_GET_XSAVE2 when larger than 4 KiB), xcrs,
 *         debug registers, every MSR of KVM_GET_MSR_INDEX_LIST that KVM lets
 *         us read (TSC and kvmclock included), LAPIC, pending events, MP
 *         state, CPUID;
 *   vm:   PIC master/slave and IOAPIC (KVM_GET_IRQCHIP), KVM clock.
 * Loading checks that the saved CPUID fits what this host's KVM supports
 * and that the TSC rate matches (or can be scaled), and refuses clearly.
 * Everything here runs with every vCPU out of KVM_RUN.
 */
#ifndef ARCH_X86_VCPU_STATE_H
#define ARCH_X86_VCPU_STATE_H

#include "migration/state.h"
#include "vmm/vm.h"

#define VCPU_STATE_VERSION 1
#define VM_STATE_VERSION   1

int x86_vcpu_save(struct vcpu *vcpu, struct state_writer *w);
int x86_vcpu_load(struct vcpu *vcpu, const struct state_reader *parent);
/* Set the saved CPUID (checked against the host) before anything else. */
int x86_vcpu_load_cpuid(struct vcpu *vcpu, const struct state_reader *parent);
int x86_vm_save(struct vm *vm, struct state_writer *w);
/* Irqchip now; the clock is set by x86_vm_load_clock() right before running. */
int x86_vm_load(struct vm *vm, const struct state_reader *parent);
int x86_vm_load_clock(struct vm *vm, const struct state_reader *parent);
/* vCPU thread, right before its first KVM_RUN: the clock and kvmclock
 * MSRs a restore held back (see vcpu_state.c). */
void x86_vcpu_first_run(struct vcpu *vcpu);
/* The TSC rate the stream was saved at: adopt it or refuse. */
int x86_vm_check_tsc(struct vm *vm, uint32_t saved_khz);

#endif
