// SPDX-License-Identifier: MIT
#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/vcpu_arch.h"
#include "vmm/log.h"

#define CR0_PE  (1ULL << 0)
#define CR0_MP  (1ULL << 1)
#define CR0_ET  (1ULL << 4)
#define CR0_NE  (1ULL << 5)
#define CR0_WP  (1ULL << 16)
#define CR0_PG  (1ULL << 31)
#define CR4_PAE (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)

#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

int x86_vcpu_init(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	struct kvm_cpuid2 *c = cpuid_alloc();
	int ret = -1;

	if (!c) {
		pr_err("out of memory");
		return -1;
	}
	if (cpuid_for_vcpu(vm->cpuid, c, vcpu->id, vm->nr_vcpus, vm->tsc_khz) < 0) {
		pr_err("vCPU %u: cannot build CPUID", vcpu->id);
		goto out;
	}
	if (ioctl(vcpu->fd, KVM_SET_CPUID2, c) < 0) {
		pr_err("vCPU %u: KVM_SET_CPUID2: %s", vcpu->id, strerror(errno));
		goto out;
	}
	ret = 0;
out:
	free(c);
	return ret;
}

static void lapic_set_lvt_mode(struct kvm_lapic_state *st, unsigned reg, uint32_t mode)
{
	uint32_t v;

	memcpy(&v, &st->regs[reg], 4);
	v = (v & ~0x700U) | (mode << 8);
	memcpy(&st->regs[reg], &v, 4);
}

int x86_vcpu_lapic_init(struct vcpu *vcpu)
{
	struct kvm_lapic_state st;

	if (ioctl(vcpu->fd, KVM_GET_LAPIC, &st) < 0) {
		pr_err("vCPU %u: KVM_GET_LAPIC: %s", vcpu->id, strerror(errno));
		return -1;
	}
	lapic_set_lvt_mode(&st, APIC_LVT_LINT0, APIC_MODE_EXTINT);
	lapic_set_lvt_mode(&st, APIC_LVT_LINT1, APIC_MODE_NMI);
	if (ioctl(vcpu->fd, KVM_SET_LAPIC, &st) < 0) {
		pr_err("vCPU %u: KVM_SET_LAPIC: %s", vcpu->id, strerror(errno));
		return -1;
	}
	return 0;
}

static struct kvm_segment flat_segment(uint16_t sel, uint8_t type, bool code64)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = code64 ? 0 : 1, .s = 1,
		.l = code64 ? 1 : 0, .g = 1,
	};
}

static void set_boot_sregs(struct kvm_sregs *s, const struct boot_entry *e)
{
	bool lm = e->mode == CPU_MODE_LONG64;
	struct kvm_segment data = flat_segment(e->data_sel, 0x3, false);

	s->cs = flat_segment(e->code_sel, 0xb, lm);
	s->ds = s->es = s->fs = s->gs = s->ss = data;
	s->gdt.base = e->gdt_base;
	s->gdt.limit = e->gdt_limit;
	s->idt.base = 0;
	s->idt.limit = 0;
	s->cr0 = CR0_PE | CR0_ET;
	s->cr4 = 0;
	s->efer = 0;
	if (lm) {
		s->cr0 |= CR0_MP | CR0_NE | CR0_WP | CR0_PG;
		s->cr3 = e->cr3;
		s->cr4 = CR4_PAE;
		s->efer = EFER_LME | EFER_LMA;
	}
}

int x86_vcpu_set_boot_regs(struct vcpu *vcpu, const struct boot_entry *e)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = {
		.rip = e->rip, .rsi = e->rsi, .rbx = e->rbx, .rflags = 0x2,
	};

	/* Start from the reset state: TR and LDTR stay valid for VM entry. */
	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0) {
		pr_err("vCPU %u: KVM_GET_SREGS: %s", vcpu->id, strerror(errno));
		return -1;
	}
	set_boot_sregs(&sregs, e);
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0) {
		pr_err("vCPU %u: KVM_SET_SREGS: %s", vcpu->id, strerror(errno));
		return -1;
	}
	if (ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0) {
		pr_err("vCPU %u: KVM_SET_REGS: %s", vcpu->id, strerror(errno));
		return -1;
	}
	return 0;
}

/* Instruction bytes at CS:RIP, through the guest's own page tables. */
static int read_insn_bytes(struct vcpu *vcpu, uint64_t rip, uint8_t *buf, unsigned len)
{
	struct kvm_sregs s;
	struct kvm_translation tr = { 0 };

	if (ioctl(vcpu->fd, KVM_GET_SREGS, &s) < 0)
		return -1;
	tr.linear_address = s.cs.base + rip;
	if (ioctl(vcpu->fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid)
		return -1;
	return guest_mem_read(&vcpu->vm->mem, tr.physical_address, buf, len);
}

static void format_bytes(char *out, size_t cap, const uint8_t *b, unsigned n)
{
	size_t used = 0;

	out[0] = 0;
	for (unsigned i = 0; i < n && used + 4 < cap; i++)
		used += (size_t)snprintf(out + used, cap - used, "%s%02x", i ? " " : "", b[i]);
}

static const char *exit_reason_name(const struct kvm_run *run)
{
	if (run->exit_reason == KVM_EXIT_FAIL_ENTRY)
		return "VM entry failure";
	if (run->exit_reason != KVM_EXIT_INTERNAL_ERROR)
		return "unexpected exit";
	switch (run->internal.suberror) {
	case KVM_INTERNAL_ERROR_EMULATION:
		return "emulation failure";
	case KVM_INTERNAL_ERROR_SIMUL_EX:
		return "exception while delivering an exception";
	case KVM_INTERNAL_ERROR_DELIVERY_EV:
		return "event delivery failure";
	default:
		return "KVM internal error";
	}
}

void x86_vcpu_report_failure(struct vcpu *vcpu)
{
	const struct kvm_run *run = vcpu->run;
	struct kvm_regs regs = { 0 };
	uint8_t bytes[15];
	unsigned n = 0;
	char hex[64] = "unavailable";

	ioctl(vcpu->fd, KVM_GET_REGS, &regs);
	if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR &&
	    run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
	    (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
		n = run->emulation_failure.insn_size;
		if (n > sizeof(bytes))
			n = sizeof(bytes);
		memcpy(bytes, run->emulation_failure.insn_bytes, n);
	} else if (read_insn_bytes(vcpu, regs.rip, bytes, sizeof(bytes)) == 0) {
		n = sizeof(bytes);
	}
	if (n)
		format_bytes(hex, sizeof(hex), bytes, n);
	pr_err("vCPU %u: %s (exit %u, suberror %u) at RIP 0x%llx, bytes: %s",
	       vcpu->id, exit_reason_name(run), run->exit_reason,
	       run->exit_reason == KVM_EXIT_INTERNAL_ERROR ? run->internal.suberror : 0,
	       (unsigned long long)regs.rip, hex);
}
