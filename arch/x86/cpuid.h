/* SPDX-License-Identifier: MIT */
/*
 * The CPUID a vCPU sees: KVM_GET_SUPPORTED_CPUID, then per vCPU the APIC ID
 * and topology (one package, ncpus cores, one thread each), the hypervisor
 * bit, VMX/SVM hidden (nested state is not migrated), and a 0x40000010
 * timing leaf (TSC and APIC-bus kHz). Pure functions over struct kvm_cpuid2.
 */
#ifndef ARCH_X86_CPUID_H
#define ARCH_X86_CPUID_H

#include <linux/kvm.h>
#include <stdint.h>

#define CPUID_MAX_ENTRIES 256

/* malloc'd copy of what KVM supports, or NULL (error printed). */
struct kvm_cpuid2 *cpuid_get_supported(int kvm_fd);
/* Allocate a cpuid2 with room for CPUID_MAX_ENTRIES. */
struct kvm_cpuid2 *cpuid_alloc(void);

/* Write into `out` the CPUID of vCPU `id` of `ncpus`, derived from `base`. */
int cpuid_for_vcpu(const struct kvm_cpuid2 *base, struct kvm_cpuid2 *out,
		   unsigned id, unsigned ncpus, uint32_t tsc_khz);

/* Lookup helper (NULL if absent). */
struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx);

/* Bits of the x2APIC ID used by `n` items (ceil(log2(n))). */
unsigned cpuid_id_bits(unsigned n);

#endif
