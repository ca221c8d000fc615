// SPDX-License-Identifier: MIT
/*
 * Register groups are stored as KVM's own UAPI structures (a stable ABI),
 * one named property each, with the size checked on load; MSRs are one
 * property per MSR named by its index, so a reader sees which are there.
 * Load order follows what KVM needs: CPUID first, then sregs before regs,
 * XSAVE, XCRs, MSRs, LAPIC before events, MP state last.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/vcpu_state.h"
#include "vmm/log.h"

#define MAX_MSRS        512
#define XSAVE_LEGACY    4096
#define MSR_ARCH_CAPS   0x10a   /* read-only on some hosts (PLATFORM.md): never fatal */
/* Writing a kvmclock wall-clock MSR makes KVM write the host's current
 * wall clock into guest RAM at once. The guest read it at boot and keeps
 * its own copy in RAM, which came over with the rest: restoring the MSR
 * would only change guest memory behind the guest's back. */
#define MSR_KVM_WALL_CLOCK      0x11
#define MSR_KVM_WALL_CLOCK_NEW  0x4b564d00
/* Setting a system-time MSR makes KVM rewrite the guest's pvclock page:
 * held back, with KVM_SET_CLOCK, until the vCPU first runs, so a restored
 * guest's RAM stays exactly what was saved until it resumes (and its clock
 * continues from the moment it resumes, not from when it was loaded). */
#define MSR_KVM_SYSTEM_TIME     0x12
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define MSR_IA32_TSC            0x10
#define NSEC_PER_SEC            1000000000ULL

static int vioctl(struct vcpu *v, unsigned long req, void *arg, const char *what)
{
	if (ioctl(v->fd, req, arg) < 0) {
		pr_err("vCPU %u: %s: %s", v->id, what, strerror(errno));
		return -1;
	}
	return 0;
}

static size_t xsave_size(struct vcpu *v)
{
	int n = ioctl(v->vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);

	return n > XSAVE_LEGACY ? (size_t)n : XSAVE_LEGACY;
}

static int save_msrs(struct vcpu *v, struct state_writer *w)
{
	struct kvm_msr_list *list = calloc(1, sizeof(*list) + MAX_MSRS * 4);
	struct kvm_msrs *msrs = calloc(1, sizeof(*msrs) + MAX_MSRS * sizeof(struct kvm_msr_entry));
	uint32_t n = 0;
	int ret = -1;

	if (!list || !msrs)
		goto out;
	list->nmsrs = MAX_MSRS;
	if (ioctl(v->vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		pr_err("KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
		goto out;
	}
	state_node_begin(w, "msrs", 1);
	/* KVM_GET_MSRS stops at the first MSR it refuses: skip it and go on. */
	for (uint32_t i = 0; i < list->nmsrs; i += n + 1) {
		msrs->nmsrs = list->nmsrs - i;
		for (uint32_t k = 0; k < msrs->nmsrs; k++)
			msrs->entries[k] = (struct kvm_msr_entry){ .index = list->indices[i + k] };
		n = (uint32_t)ioctl(v->fd, KVM_GET_MSRS, msrs);
		if ((int)n < 0)
			n = 0;
		for (uint32_t k = 0; k < n; k++) {
			char name[16];

			snprintf(name, sizeof(name), "0x%08x", msrs->entries[k].index);
			state_put_u64(w, name, msrs->entries[k].data);
		}
	}
	state_node_end(w);
	ret = 0;
out:
	free(list);
	free(msrs);
	return ret;
}

static int save_cpuid(struct vcpu *v, struct state_writer *w)
{
	struct kvm_cpuid2 *c = cpuid_alloc();
	int ret = -1;

	if (c && vioctl(v, KVM_GET_CPUID2, c, "KVM_GET_CPUID2") == 0) {
		state_put_bytes(w, "cpuid", c->entries, c->nent * sizeof(c->entries[0]));
		ret = 0;
	}
	free(c);
	return ret;
}

static int save_xsave(struct vcpu *v, struct state_writer *w)
{
	size_t size = xsave_size(v);
	void *x = calloc(1, size);
	int ret;

	if (!x)
		return -1;
	ret = vioctl(v, size > XSAVE_LEGACY ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, x, "KVM_GET_XSAVE");
	if (!ret)
		state_put_bytes(w, "xsave", x, size);
	free(x);
	return ret;
}

int x86_vcpu_save(struct vcpu *v, struct state_writer *w)
{
	/* Zeroed: padding and reserved fields go into the stream as zeroes. */
	struct kvm_regs regs = { 0 };
	struct kvm_sregs sregs = { 0 };
	struct kvm_xcrs xcrs = { 0 };
	struct kvm_debugregs dbg = { 0 };
	struct kvm_lapic_state lapic = { 0 };
	struct kvm_vcpu_events ev = { 0 };
	struct kvm_mp_state mp = { 0 };
	char name[16];

	if (vioctl(v, KVM_GET_REGS, &regs, "KVM_GET_REGS") || vioctl(v, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS") ||
	    vioctl(v, KVM_GET_XCRS, &xcrs, "KVM_GET_XCRS") ||
	    vioctl(v, KVM_GET_DEBUGREGS, &dbg, "KVM_GET_DEBUGREGS") ||
	    vioctl(v, KVM_GET_LAPIC, &lapic, "KVM_GET_LAPIC") ||
	    vioctl(v, KVM_GET_VCPU_EVENTS, &ev, "KVM_GET_VCPU_EVENTS") ||
	    vioctl(v, KVM_GET_MP_STATE, &mp, "KVM_GET_MP_STATE"))
		return -1;
	snprintf(name, sizeof(name), "cpu%u", v->id);
	state_node_begin(w, name, VCPU_STATE_VERSION);
	state_put_bytes(w, "regs", &regs, sizeof(regs));
	state_put_u64(w, "rip", regs.rip);     /* for humans reading the dump */
	state_put_bytes(w, "sregs", &sregs, sizeof(sregs));
	state_put_bytes(w, "xcrs", &xcrs, sizeof(xcrs));
	state_put_bytes(w, "debugregs", &dbg, sizeof(dbg));
	state_put_bytes(w, "lapic", &lapic, sizeof(lapic));
	state_put_bytes(w, "events", &ev, sizeof(ev));
	state_put_u32(w, "mp-state", mp.mp_state);
	if (save_xsave(v, w) < 0 || save_cpuid(v, w) < 0 || save_msrs(v, w) < 0)
		return -1;
	state_node_end(w);
	return 0;
}

static int open_cpu(struct vcpu *v, const struct state_reader *parent, struct state_reader *r)
{
	char name[16];

	snprintf(name, sizeof(name), "cpu%u", v->id);
	if (state_node_open(parent, name, r) < 0)
		return -1;
	return state_check_version(r, VCPU_STATE_VERSION);
}

/* Every feature bit the saved CPUID shows in the leaves that gate
 * instructions must be one this host's vCPU has. We compare with the new
 * vCPU's own CPUID as KVM reports it (KVM_GET_CPUID2), not with
 * KVM_GET_SUPPORTED_CPUID: some KVMs (PVM) adjust what a vCPU shows. */
static int cpuid_fits(const struct kvm_cpuid_entry2 *saved, uint32_t n,
		      struct kvm_cpuid2 *cur)
{
	static const struct { uint32_t fn, idx; } checked[] = {
		{ 1, 0 }, { 7, 0 }, { 0xd, 1 }, { 0x80000001, 0 },
	};

	for (size_t i = 0; i < sizeof(checked) / sizeof(checked[0]); i++) {
		struct kvm_cpuid_entry2 *host = cpuid_find(cur, checked[i].fn, checked[i].idx);
		const struct kvm_cpuid_entry2 *s = NULL;
		uint32_t miss[4];

		for (uint32_t k = 0; k < n; k++)
			if (saved[k].function == checked[i].fn && saved[k].index == checked[i].idx)
				s = &saved[k];
		if (!s)
			continue;
		if (!host) {
			pr_err("the saved CPUID has leaf 0x%x that this host's KVM lacks", checked[i].fn);
			return -1;
		}
		/* Leaf 1 ECX bit 31 (hypervisor) and 27 (OSXSAVE) are ours, not the host's. */
		miss[0] = s->eax & ~host->eax;
		miss[1] = s->ebx & ~host->ebx;
		miss[2] = s->ecx & ~host->ecx & (checked[i].fn == 1 ? ~((1U << 31) | (1U << 27)) : ~0U);
		miss[3] = s->edx & ~host->edx;
		if (checked[i].fn == 1)
			miss[0] = miss[1] = 0;  /* family/model and APIC ID fields */
		for (int r = 0; r < 4; r++)
			if (miss[r]) {
				pr_err("the saved CPUID needs features this host's KVM lacks (leaf 0x%x.%u %s bits 0x%08x)",
				       checked[i].fn, checked[i].idx, (const char *[]){ "eax", "ebx", "ecx", "edx" }[r],
				       miss[r]);
				return -1;
			}
	}
	return 0;
}

int x86_vcpu_load_cpuid(struct vcpu *v, const struct state_reader *parent)
{
	struct state_reader r;
	struct kvm_cpuid2 *c, *cur;
	const void *p;
	size_t len;
	int ret = -1;

	if (open_cpu(v, parent, &r) < 0 ||
	    state_get_var(&r, "cpuid", &p, &len, CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2)) < 0)
		return -1;
	if (!len || len % sizeof(struct kvm_cpuid_entry2)) {
		pr_err("device state: %s/cpuid is malformed", r.path);
		return -1;
	}
	c = cpuid_alloc();
	cur = cpuid_alloc();
	if (!c || !cur || vioctl(v, KVM_GET_CPUID2, cur, "KVM_GET_CPUID2") < 0)
		goto out;
	c->nent = (uint32_t)(len / sizeof(struct kvm_cpuid_entry2));
	memcpy(c->entries, p, len);
	if (cpuid_fits(c->entries, c->nent, cur) == 0)
		ret = vioctl(v, KVM_SET_CPUID2, c, "KVM_SET_CPUID2");
out:
	free(c);
	free(cur);
	return ret;
}

static int load_msrs(struct vcpu *v, const struct state_reader *cpu)
{
	struct kvm_msrs *msrs = calloc(1, sizeof(*msrs) + MAX_MSRS * sizeof(struct kvm_msr_entry));
	struct state_reader m;
	uint32_t n = 0;
	int ret = -1;

	if (!msrs || state_node_open(cpu, "msrs", &m) < 0)
		goto out;
	for (int off = state_first_prop(&m); off >= 0 && n < MAX_MSRS;
	     off = state_next_prop(&m, off)) {
		const char *name;
		uint64_t val;
		char *end;
		unsigned long idx;

		name = state_prop_name(&m, off);
		if (!name || strcmp(name, "version") == 0)
			continue;
		idx = strtoul(name, &end, 16);
		/* The value at this offset, not looked up by name: a node of
		 * n distinct names for the same MSR (" 11", "011", ...) would
		 * cost n^2 lookups: hours for a 64 MiB state. */
		if (*end || idx > 0xffffffffUL || state_prop_u64(&m, off, &val) < 0)
			goto out;
		if (idx == MSR_KVM_WALL_CLOCK || idx == MSR_KVM_WALL_CLOCK_NEW)
			continue;
		if (idx == MSR_IA32_TSC) {
			v->restore_tsc = val;
			v->restore_tsc_valid = true;
		}
		if ((idx == MSR_KVM_SYSTEM_TIME || idx == MSR_KVM_SYSTEM_TIME_NEW) &&
		    v->nr_deferred < VCPU_MAX_DEFERRED) {
			v->deferred[v->nr_deferred++] = (struct vcpu_msr){ (uint32_t)idx, val };
			continue;
		}
		msrs->entries[n++] = (struct kvm_msr_entry){ .index = (uint32_t)idx, .data = val };
	}
	msrs->nmsrs = n;
	/* KVM sets in order and stops at a refusal: report it and go on past it. */
	for (uint32_t done = 0; done < n;) {
		struct kvm_msrs *rest = msrs;
		int r;

		memmove(rest->entries, rest->entries + done, (n - done) * sizeof(rest->entries[0]));
		n -= done;
		rest->nmsrs = n;
		r = ioctl(v->fd, KVM_SET_MSRS, rest);
		done = r < 0 ? 0 : (uint32_t)r;
		if (done == n)
			break;
		if (rest->entries[done].index != MSR_ARCH_CAPS)
			pr_warn("vCPU %u: KVM refused to restore MSR 0x%x", v->id,
				rest->entries[done].index);
		done++;
	}
	ret = 0;
out:
	free(msrs);
	return ret;
}

static int load_xsave(struct vcpu *v, const struct state_reader *r)
{
	size_t want = xsave_size(v), len;
	const void *p;
	void *x;
	int ret;

	if (state_get_var(r, "xsave", &p, &len, 1 << 20) < 0)
		return -1;
	if (len < XSAVE_LEGACY || len > want) {
		pr_err("device state: %s/xsave is %zu bytes; this host's KVM takes %zu", r->path, len,
		       want);
		return -1;
	}
	x = calloc(1, want);
	if (!x)
		return -1;
	memcpy(x, p, len);
	ret = vioctl(v, KVM_SET_XSAVE, x, "KVM_SET_XSAVE");
	free(x);
	return ret;
}

int x86_vcpu_load(struct vcpu *v, const struct state_reader *parent)
{
	struct state_reader r;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dbg;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	struct kvm_mp_state mp;

	if (open_cpu(v, parent, &r) < 0 ||
	    state_get_bytes(&r, "regs", &regs, sizeof(regs)) < 0 ||
	    state_get_bytes(&r, "sregs", &sregs, sizeof(sregs)) < 0 ||
	    state_get_bytes(&r, "xcrs", &xcrs, sizeof(xcrs)) < 0 ||
	    state_get_bytes(&r, "debugregs", &dbg, sizeof(dbg)) < 0 ||
	    state_get_bytes(&r, "lapic", &lapic, sizeof(lapic)) < 0 ||
	    state_get_bytes(&r, "events", &ev, sizeof(ev)) < 0 ||
	    state_get_u32(&r, "mp-state", &mp.mp_state) < 0)
		return -1;
	if (xcrs.nr_xcrs > KVM_MAX_XCRS) {
		pr_err("device state: %s/xcrs is malformed", r.path);
		return -1;
	}
	/* Events: restore everything KVM reported as valid. */
	ev.flags &= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
		    KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
	if (vioctl(v, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS") || vioctl(v, KVM_SET_REGS, &regs, "KVM_SET_REGS") ||
	    load_xsave(v, &r) < 0 ||
	    (xcrs.nr_xcrs && vioctl(v, KVM_SET_XCRS, &xcrs, "KVM_SET_XCRS")) ||
	    load_msrs(v, &r) < 0 ||
	    vioctl(v, KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC") ||
	    vioctl(v, KVM_SET_VCPU_EVENTS, &ev, "KVM_SET_VCPU_EVENTS") ||
	    vioctl(v, KVM_SET_DEBUGREGS, &dbg, "KVM_SET_DEBUGREGS") ||
	    vioctl(v, KVM_SET_MP_STATE, &mp, "KVM_SET_MP_STATE"))
		return -1;
	return 0;
}

static const struct { uint32_t chip; const char *name; size_t size; } irqchips[] = {
	{ KVM_IRQCHIP_PIC_MASTER, "pic-master", sizeof(struct kvm_pic_state) },
	{ KVM_IRQCHIP_PIC_SLAVE, "pic-slave", sizeof(struct kvm_pic_state) },
	{ KVM_IRQCHIP_IOAPIC, "ioapic", sizeof(struct kvm_ioapic_state) },
};

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

int x86_vm_save(struct vm *vm, struct state_writer *w)
{
	struct kvm_clock_data clk = { 0 };

	state_node_begin(w, "vm", VM_STATE_VERSION);
	for (size_t i = 0; i < sizeof(irqchips) / sizeof(irqchips[0]); i++) {
		struct kvm_irqchip chip;

		memset(&chip, 0, sizeof(chip));
		chip.chip_id = irqchips[i].chip;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) < 0) {
			pr_err("KVM_GET_IRQCHIP %s: %s", irqchips[i].name, strerror(errno));
			return -1;
		}
		state_put_bytes(w, irqchips[i].name, &chip.chip, irqchips[i].size);
	}
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clk) < 0) {
		pr_err("KVM_GET_CLOCK: %s", strerror(errno));
		return -1;
	}
	state_put_u64(w, "clock-ns", clk.clock);
	/* Since 1.3, for --clock=realtime: when, in real time, the guest
	 * stopped. KVM pairs the two readings itself where the host's clock
	 * allows (KVM_CLOCK_REALTIME); elsewhere one read right after will do. */
	state_put_u64(w, "realtime-ns", clk.flags & KVM_CLOCK_REALTIME ? clk.realtime : realtime_ns());
	state_put_u32(w, "tsc-khz", vm->tsc_khz);
	state_node_end(w);
	return 0;
}

int x86_vm_load(struct vm *vm, const struct state_reader *parent)
{
	struct state_reader r;
	uint32_t khz;

	if (state_node_open(parent, "vm", &r) < 0 || state_check_version(&r, VM_STATE_VERSION) < 0 ||
	    state_get_u32(&r, "tsc-khz", &khz) < 0 || x86_vm_check_tsc(vm, khz) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(irqchips) / sizeof(irqchips[0]); i++) {
		struct kvm_irqchip chip = { .chip_id = irqchips[i].chip };

		if (state_get_bytes(&r, irqchips[i].name, &chip.chip, irqchips[i].size) < 0)
			return -1;
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0) {
			pr_err("KVM_SET_IRQCHIP %s: %s", irqchips[i].name, strerror(errno));
			return -1;
		}
	}
	return 0;
}

int x86_vm_load_clock(struct vm *vm, const struct state_reader *parent)
{
	struct state_reader r;

	vm->restore_realtime_ns = 0;
	if (state_node_open(parent, "vm", &r) < 0 ||
	    state_get_u64(&r, "clock-ns", &vm->restore_clock_ns) < 0)
		return -1;
	if (state_has_prop(&r, "realtime-ns") &&
	    state_get_u64(&r, "realtime-ns", &vm->restore_realtime_ns) < 0)
		return -1;
	if (vm->cfg.clock == GUEST_CLOCK_REALTIME && !vm->restore_realtime_ns &&
	    vm->cfg.clock_set)
		pr_warn("--clock=realtime: the stream does not say when the guest stopped (format "
			"before 1.3); its clock continues from the save");
	vm->restore_clock_pending = true;
	return 0;
}

/*
 * --clock=realtime: the real time since the save, never negative (two hosts'
 * clocks may disagree; a guest's monotonic clock must not go back).
 */
static uint64_t skipped_ns(const struct vm *vm)
{
	uint64_t now;

	if (vm->cfg.clock != GUEST_CLOCK_REALTIME || !vm->restore_realtime_ns)
		return 0;
	now = realtime_ns();
	return now > vm->restore_realtime_ns ? now - vm->restore_realtime_ns : 0;
}

static void set_clock(struct vm *vm)
{
	struct kvm_clock_data clk = { 0 };

	vm->restore_skip_ns = skipped_ns(vm);
	clk.clock = vm->restore_clock_ns + vm->restore_skip_ns;
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clk) < 0)
		pr_warn("KVM_SET_CLOCK: %s", strerror(errno));
	if (vm->restore_skip_ns)
		pr_info("guest clock: %llu.%03llu s forward, the real time since the save "
			"(--clock=realtime)", (unsigned long long)(vm->restore_skip_ns / NSEC_PER_SEC),
			(unsigned long long)(vm->restore_skip_ns / 1000000 % 1000));
}

/*
 * The TSC moves with kvmclock: set again now (it ran while the VM was being
 * built or parked by --paused), plus the skipped time at the guest's rate,
 * so a guest that reads the TSC directly agrees with its kvmclock. Every
 * vCPU writes the same value within microseconds, which KVM takes as one
 * synchronised TSC.
 */
static void set_tsc(struct vcpu *v)
{
	struct vm *vm = v->vm;
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e.index = MSR_IA32_TSC };

	if (!v->restore_tsc_valid)
		return;
	m.e.data = v->restore_tsc + (uint64_t)((unsigned __int128)vm->restore_skip_ns * vm->tsc_khz / 1000000);
	if (ioctl(v->fd, KVM_SET_MSRS, &m) != 1)
		pr_warn("vCPU %u: cannot set the TSC", v->id);
	v->restore_tsc_valid = false;
}

/*
 * Tell the guest it was stopped (PVCLOCK_GUEST_STOPPED in its pvclock page),
 * so its soft-lockup and RCU-stall watchdogs do not count the time the VM
 * did not run. EINVAL: the guest has no kvmclock, nothing to tell.
 */
static void say_stopped(struct vcpu *v)
{
	if (ioctl(v->fd, KVM_KVMCLOCK_CTRL, 0) < 0 && errno != EINVAL)
		pr_debug("vCPU %u: KVM_KVMCLOCK_CTRL: %s", v->id, strerror(errno));
}

void x86_vcpu_first_run(struct vcpu *v)
{
	struct vm *vm = v->vm;
	struct kvm_msrs *msrs;

	/* Guest time resumes where it stopped (or, --clock=realtime, where
	 * real time is), never backwards. The first vCPU to get here sets it,
	 * before any TSC or kvmclock MSR. */
	pthread_mutex_lock(&vm->pause_lock);
	if (vm->restore_clock_pending) {
		set_clock(vm);
		vm->restore_clock_pending = false;
	}
	pthread_mutex_unlock(&vm->pause_lock);
	set_tsc(v);
	if (!v->nr_deferred)
		return;
	msrs = calloc(1, sizeof(*msrs) + v->nr_deferred * sizeof(struct kvm_msr_entry));
	if (!msrs)
		return;
	msrs->nmsrs = v->nr_deferred;
	for (unsigned i = 0; i < v->nr_deferred; i++)
		msrs->entries[i] = (struct kvm_msr_entry){ .index = v->deferred[i].index,
							   .data = v->deferred[i].value };
	if (ioctl(v->fd, KVM_SET_MSRS, msrs) != (int)v->nr_deferred)
		pr_warn("vCPU %u: cannot restore kvmclock", v->id);
	else
		say_stopped(v);
	v->nr_deferred = 0;
	free(msrs);
}

int x86_vm_check_tsc(struct vm *vm, uint32_t saved_khz)
{
	/* Within 250 ppm counts as the same rate (NTP-grade calibration noise). */
	uint64_t diff = saved_khz > vm->tsc_khz ? saved_khz - vm->tsc_khz : vm->tsc_khz - saved_khz;

	if (!saved_khz || diff * 4000 <= vm->tsc_khz)
		return 0;
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_CONTROL) > 0) {
		for (unsigned i = 0; i < vm->nr_vcpus; i++)
			if (ioctl(vm->vcpus[i].fd, KVM_SET_TSC_KHZ, (unsigned long)saved_khz) < 0)
				goto refuse;
		vm->tsc_khz = saved_khz;
		return 0;
	}
refuse:
	pr_err("the guest's TSC ran at %u kHz; this host's runs at %u kHz and KVM cannot scale it",
	       saved_khz, vm->tsc_khz);
	return -1;
}
