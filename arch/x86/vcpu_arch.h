/* SPDX-License-Identifier: MIT */
/*
 * x86 side of a vCPU: CPUID, local APIC set-up, the register state each
 * boot protocol requires at entry, and the failure report.
 */
#ifndef ARCH_X86_VCPU_ARCH_H
#define ARCH_X86_VCPU_ARCH_H

#include "vmm/vm.h"

/* Per-vCPU CPUID (vm->cpuid, vm->tsc_khz must be set). */
int x86_vcpu_init(struct vcpu *vcpu);
/* After every vCPU exists: LINT0 ExtINT, LINT1 NMI, and the GET/SET round
 * trip that makes KVM rebuild its APIC-ID map (else INIT to an AP is lost). */
int x86_vcpu_lapic_init(struct vcpu *vcpu);
/* Registers of the boot vCPU for `entry`. APs stay in wait-for-SIPI. */
int x86_vcpu_set_boot_regs(struct vcpu *vcpu, const struct boot_entry *entry);
/* One line: vCPU, exit reason, RIP and instruction bytes. */
void x86_vcpu_report_failure(struct vcpu *vcpu);

#endif
