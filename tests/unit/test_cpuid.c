// SPDX-License-Identifier: MIT
#include <check.h>

#include "tests/unit/check_main.h"
#include <stdlib.h>

#include "arch/x86/cpuid.h"

/* A host-like supported CPUID: max leaf 0x1F, caches, KVM signature. */
static struct kvm_cpuid2 *fake_base(uint32_t max_leaf)
{
	struct kvm_cpuid2 *c = cpuid_alloc();
	struct kvm_cpuid_entry2 e[] = {
		{ .function = 0, .eax = max_leaf },
		{ .function = 1, .eax = 0x906ea, .ebx = 0x07100800, .ecx = 0xfeda3223 | (1U << 5),
		  .edx = 0x0f8bfbff },
		{ .function = 4, .index = 0, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
		  .eax = 0x1c004121 },
		{ .function = 4, .index = 3, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
		  .eax = 0x1c03c163 },
		{ .function = 4, .index = 4, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX },
		{ .function = 0xB, .index = 0, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
		  .eax = 1, .ebx = 2, .ecx = 0x100 },
		{ .function = 0x40000000, .eax = 0x40000001, .ebx = 0x4b4d564b },
		{ .function = 0x80000001, .ecx = 0x121 | (1U << 2) },
		{ .function = 0x80000008, .eax = 0x3027, .ecx = 0x7007 },
	};

	c->nent = sizeof(e) / sizeof(e[0]);
	for (unsigned i = 0; i < c->nent; i++)
		c->entries[i] = e[i];
	return c;
}

START_TEST(topology_per_vcpu)
{
	struct kvm_cpuid2 *base = fake_base(0x1F), *out = cpuid_alloc();

	for (unsigned id = 0; id < 4; id++) {
		struct kvm_cpuid_entry2 *e;

		ck_assert_int_eq(cpuid_for_vcpu(base, out, id, 4, 2500000), 0);
		e = cpuid_find(out, 1, 0);
		ck_assert_uint_eq(e->ebx >> 24, id);
		ck_assert_uint_eq((e->ebx >> 16) & 0xff, 4);
		ck_assert(e->ecx & (1U << 31));         /* hypervisor */
		ck_assert(!(e->ecx & (1U << 5)));       /* no VMX */
		ck_assert(e->edx & (1U << 28));         /* HTT: more than one logical CPU */
		e = cpuid_find(out, 0xB, 0);
		ck_assert_uint_eq(e->edx, id);
		ck_assert_uint_eq(e->ebx, 1);
		ck_assert_uint_eq((e->ecx >> 8) & 0xff, 1);
		e = cpuid_find(out, 0xB, 1);
		ck_assert_uint_eq(e->eax, 2);           /* 4 cores: 2 bits */
		ck_assert_uint_eq(e->ebx, 4);
		ck_assert_uint_eq((e->ecx >> 8) & 0xff, 2);
		ck_assert_uint_eq(e->edx, id);
		e = cpuid_find(out, 0xB, 2);
		ck_assert_uint_eq((e->ecx >> 8) & 0xff, 0);
		ck_assert_ptr_nonnull(cpuid_find(out, 0x1F, 1));
		e = cpuid_find(out, 4, 0);              /* L1: one core, package of 4 */
		ck_assert_uint_eq(e->eax >> 26, 3);
		ck_assert_uint_eq((e->eax >> 14) & 0xfff, 0);
		e = cpuid_find(out, 4, 3);              /* L3: shared by all 4 */
		ck_assert_uint_eq((e->eax >> 14) & 0xfff, 3);
		ck_assert(!(cpuid_find(out, 0x80000001, 0)->ecx & (1U << 2)));  /* no SVM */
		ck_assert_uint_eq(cpuid_find(out, 0x80000008, 0)->ecx & 0xff, 3);
	}
	free(base);
	free(out);
}
END_TEST

START_TEST(single_cpu_and_timing_leaf)
{
	struct kvm_cpuid2 *base = fake_base(0xD), *out = cpuid_alloc();
	struct kvm_cpuid_entry2 *e;

	ck_assert_int_eq(cpuid_for_vcpu(base, out, 0, 1, 2500000), 0);
	ck_assert(!(cpuid_find(out, 1, 0)->edx & (1U << 28)));
	/* The host's 0xB is rebuilt; 0x1F is absent when the max leaf is lower. */
	ck_assert_uint_eq(cpuid_find(out, 0xB, 1)->ebx, 1);
	ck_assert_ptr_null(cpuid_find(out, 0x1F, 0));
	ck_assert_uint_eq(cpuid_find(out, 0x40000000, 0)->eax, 0x40000010);
	e = cpuid_find(out, 0x40000010, 0);
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(e->eax, 2500000);
	ck_assert_uint_eq(e->ebx, 1000000);
	/* Built twice from the same base: no duplicate leaves pile up. */
	ck_assert_int_eq(cpuid_for_vcpu(base, out, 0, 1, 2500000), 0);
	ck_assert_uint_eq(out->nent, base->nent + 1 + 3 - 1);
	free(base);
	free(out);
}
END_TEST

START_TEST(bad_ids)
{
	struct kvm_cpuid2 *base = fake_base(0x1F), *out = cpuid_alloc();

	ck_assert_int_eq(cpuid_for_vcpu(base, out, 4, 4, 0), -1);
	ck_assert_int_eq(cpuid_for_vcpu(base, out, 0, 0, 0), -1);
	ck_assert_uint_eq(cpuid_id_bits(1), 0);
	ck_assert_uint_eq(cpuid_id_bits(2), 1);
	ck_assert_uint_eq(cpuid_id_bits(3), 2);
	ck_assert_uint_eq(cpuid_id_bits(64), 6);
	ck_assert_uint_eq(cpuid_id_bits(65), 7);
	free(base);
	free(out);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cpuid");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, topology_per_vcpu);
	tcase_add_test(tc, single_cpu_and_timing_leaf);
	tcase_add_test(tc, bad_ids);
	suite_add_tcase(s, tc);
	return check_run(s);
}
