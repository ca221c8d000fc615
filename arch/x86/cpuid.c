// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/cpuid.h"
#include "vmm/log.h"

#define CPUID_1_ECX_VMX         (1U << 5)
#define CPUID_1_ECX_HYPERVISOR  (1U << 31)
#define CPUID_1_EDX_HTT         (1U << 28)
#define CPUID_8_1_ECX_SVM       (1U << 2)
#define KVM_APIC_BUS_KHZ        1000000U /* KVM's APIC timer ticks at 1 GHz */
#define CPUID_TIMING_LEAF       0x40000010U
#define TOPO_LEVEL_SMT          1U
#define TOPO_LEVEL_CORE         2U

struct kvm_cpuid2 *cpuid_alloc(void)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) +
				      CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));

	if (c)
		c->nent = CPUID_MAX_ENTRIES;
	return c;
}

struct kvm_cpuid2 *cpuid_get_supported(int kvm_fd)
{
	struct kvm_cpuid2 *c = cpuid_alloc();

	if (!c)
		return NULL;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		pr_err("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		free(c);
		return NULL;
	}
	return c;
}

struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function != fn)
			continue;
		if (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == idx)
			return e;
	}
	return NULL;
}

unsigned cpuid_id_bits(unsigned n)
{
	unsigned bits = 0;

	while ((1U << bits) < n)
		bits++;
	return bits;
}

static struct kvm_cpuid_entry2 *cpuid_add(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx,
					  uint32_t flags)
{
	struct kvm_cpuid_entry2 *e;

	if (c->nent >= CPUID_MAX_ENTRIES)
		return NULL;
	e = &c->entries[c->nent++];
	memset(e, 0, sizeof(*e));
	e->function = fn;
	e->index = idx;
	e->flags = flags;
	return e;
}

/* Leaf 0xB / 0x1F: SMT level (1 thread per core), core level (ncpus). */
static int cpuid_set_topology_leaf(struct kvm_cpuid2 *c, uint32_t fn, unsigned id, unsigned ncpus)
{
	static const uint32_t flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
	struct kvm_cpuid_entry2 *e;

	e = cpuid_add(c, fn, 0, flags);
	if (!e)
		return -1;
	*e = (struct kvm_cpuid_entry2){ .function = fn, .index = 0, .flags = flags,
		.eax = 0, .ebx = 1, .ecx = (TOPO_LEVEL_SMT << 8) | 0, .edx = id };
	e = cpuid_add(c, fn, 1, flags);
	if (!e)
		return -1;
	*e = (struct kvm_cpuid_entry2){ .function = fn, .index = 1, .flags = flags,
		.eax = cpuid_id_bits(ncpus), .ebx = ncpus,
		.ecx = (TOPO_LEVEL_CORE << 8) | 1, .edx = id };
	e = cpuid_add(c, fn, 2, flags);
	if (!e)
		return -1;
	*e = (struct kvm_cpuid_entry2){ .function = fn, .index = 2, .flags = flags,
		.ecx = 2, .edx = id };
	return 0;
}

/* Copy base into out, dropping the leaves we rebuild per vCPU. */
static void cpuid_copy_base(const struct kvm_cpuid2 *base, struct kvm_cpuid2 *out)
{
	out->nent = 0;
	for (uint32_t i = 0; i < base->nent && out->nent < CPUID_MAX_ENTRIES; i++) {
		uint32_t fn = base->entries[i].function;

		if (fn == 0xB || fn == 0x1F || fn == CPUID_TIMING_LEAF)
			continue;
		out->entries[out->nent++] = base->entries[i];
	}
}

static void cpuid_fix_cache_leaf(struct kvm_cpuid2 *c, unsigned ncpus)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		uint32_t level = (e->eax >> 5) & 7, sharing;

		if (e->function != 4 || !(e->eax & 0x1f))
			continue;
		/* L1/L2 per core; L3 and beyond shared by the whole package. */
		sharing = level >= 3 ? ncpus - 1 : 0;
		e->eax &= 0x3ff;
		e->eax |= ((ncpus - 1) << 26) | (sharing << 14);
	}
}

static void cpuid_fix_signature(struct kvm_cpuid2 *c, uint32_t tsc_khz)
{
	struct kvm_cpuid_entry2 *e = cpuid_find(c, 0x40000000, 0), *t;

	if (!e || !tsc_khz)
		return;
	if (e->eax < CPUID_TIMING_LEAF)
		e->eax = CPUID_TIMING_LEAF;
	t = cpuid_add(c, CPUID_TIMING_LEAF, 0, 0);
	if (t) {
		t->eax = tsc_khz;
		t->ebx = KVM_APIC_BUS_KHZ;
	}
}

int cpuid_for_vcpu(const struct kvm_cpuid2 *base, struct kvm_cpuid2 *out,
		   unsigned id, unsigned ncpus, uint32_t tsc_khz)
{
	struct kvm_cpuid_entry2 *e, *max;

	if (!ncpus || id >= ncpus)
		return -1;
	cpuid_copy_base(base, out);
	e = cpuid_find(out, 1, 0);
	if (e) {
		e->ebx = (e->ebx & 0xffff) | (id << 24) | ((ncpus > 255 ? 255 : ncpus) << 16);
		e->ecx = (e->ecx & ~CPUID_1_ECX_VMX) | CPUID_1_ECX_HYPERVISOR;
		if (ncpus > 1)
			e->edx |= CPUID_1_EDX_HTT;
	}
	e = cpuid_find(out, 0x80000001, 0);
	if (e)
		e->ecx &= ~CPUID_8_1_ECX_SVM;
	e = cpuid_find(out, 0x80000008, 0);
	if (e)  /* AMD: number of cores - 1, and the APIC ID size. */
		e->ecx = (e->ecx & ~0xf0ffU) | (ncpus - 1) | (cpuid_id_bits(ncpus) << 12);
	cpuid_fix_cache_leaf(out, ncpus);
	max = cpuid_find(out, 0, 0);
	if (max && max->eax >= 0xB && cpuid_set_topology_leaf(out, 0xB, id, ncpus) < 0)
		return -1;
	if (max && max->eax >= 0x1F && cpuid_set_topology_leaf(out, 0x1F, id, ncpus) < 0)
		return -1;
	cpuid_fix_signature(out, tsc_khz);
	return 0;
}
