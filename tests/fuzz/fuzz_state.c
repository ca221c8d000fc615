// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the device-state record of a stream or snapshot (an
 * FDT) through everything that reads it: state_reader_open (libfdt's full
 * check) and the getters (migration/state.c), vmstate_load and
 * vmstate_load_clock (migration/vmstate.c) with the VM and vCPU nodes
 * (arch/x86/vcpu_state.c: TSC rate, irqchips, CPUID against the host's,
 * register blocks, XSAVE size, the MSR list, events), the UART, the RTC,
 * the i8042, and the virtio-mmio transport with its queues (rings checked
 * against guest RAM) and device nodes of virtio-blk, virtio-net and
 * virtio-rng (fuzz_devices.h: no image, no tap, no threads), and the
 * --inspect printer (stdout goes to /dev/null); after a whole load, what
 * each vCPU does before it first runs (clock, TSC, the kvmclock MSRs held
 * back). When the whole load fails
 * early, each part is tried on its own too, so that one refusal does not
 * hide the parsers after it.
 *
 * Safe without KVM: the vCPU and VM loaders' ioctls reach a fake KVM
 * (__wrap_ioctl, linked with -Wl,--wrap=ioctl) that answers for made-up
 * descriptor numbers only: it reports a host CPUID, takes what is set and
 * can be told to refuse. Guest RAM is 64 MiB of untouched memfd, as large
 * as the tests/compat machines whose state records are the seeds.
 * The VM is set up once; an input costs its parsing.
 *
 * Input: u8 settings, u8 form, then the tree.
 *   settings bit 0: two vCPUs (else one); bits 1-2: how many virtio
 *   devices vmstate_load sees (blk, net, rng in that order); bit 3: KVM
 *   scales the TSC; bit 4: XSAVE2 with 8 KiB; bit 5: a host CPUID without
 *   leaf 7's features and without leaf 0xd.1; bit 6: KVM_SET_MSRS stops at
 *   every odd-numbered MSR; bit 7: every other KVM_SET_* fails.
 *   form bit 0: the tree as a list of nodes and properties, which this
 *   harness builds into a well-formed FDT (so that a property can change
 *   size, which a byte-level mutation of a blob almost never gets right):
 *   [u8 op][u8 n][n bytes of name], op % 4: 0 begin a node, 1 end one,
 *   2 a property [u16 length][value], 3 a u32 property [u32 value].
 *   Else the FDT blob as it is.
 */
#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/vcpu_state.h"
#include "devices/i8042.h"
#include "devices/rtc.h"
#include "devices/serial.h"
#include "devices/virtio_rng.h"
#include "migration/vmstate.h"
#include "tests/fuzz/fuzz_devices.h"

#define RAM             (64ULL << 20)
#define IMG_SIZE        (1ULL << 20)    /* tests/compat's devices.img: 2048 sectors */
#define TSC_KHZ         2600000         /* the rate tests/compat's snapshots were saved at */
#define NR_VCPUS        2
#define FAKE_KVM        0x4000          /* descriptor numbers nothing real has */
#define FAKE_VM         (FAKE_KVM + 1)
#define FAKE_VCPU       (FAKE_KVM + 2)

#define K_TSC_SCALING   0x08
#define K_XSAVE2        0x10
#define K_NARROW_CPUID  0x20
#define K_REFUSE_MSRS   0x40
#define K_SET_FAILS     0x80

static struct vm vm;
static uint8_t kvm_mode;

/* ---- a fake KVM for the loaders ---- */

static int fake_cpuid(struct kvm_cpuid2 *c)
{
	static const struct { uint32_t fn, idx; bool sig; } leaves[] = {
		{ 0, 0, false }, { 1, 0, false }, { 7, 0, true }, { 0xd, 0, true },
		{ 0xd, 1, true }, { 0x80000000, 0, false }, { 0x80000001, 0, false },
	};
	uint32_t n = 0;

	for (size_t i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++) {
		struct kvm_cpuid_entry2 *e;

		if ((kvm_mode & K_NARROW_CPUID) && leaves[i].fn == 0xd && leaves[i].idx == 1)
			continue;
		if (n >= c->nent) {
			errno = E2BIG;
			return -1;
		}
		e = &c->entries[n++];
		memset(e, 0, sizeof(*e));
		e->function = leaves[i].fn;
		e->index = leaves[i].idx;
		e->flags = leaves[i].sig ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
		e->eax = e->ebx = e->ecx = e->edx = 0xffffffff;
		if ((kvm_mode & K_NARROW_CPUID) && leaves[i].fn == 7)
			e->ebx = e->ecx = e->edx = 0;
	}
	c->nent = n;
	return 0;
}

static int fake_kvm(int fd, unsigned long req, void *arg)
{
	switch (req) {
	case KVM_CHECK_EXTENSION:
		if ((unsigned long)arg == KVM_CAP_XSAVE2)
			return kvm_mode & K_XSAVE2 ? 8192 : 0;
		if ((unsigned long)arg == KVM_CAP_TSC_CONTROL)
			return !!(kvm_mode & K_TSC_SCALING);
		return 0;
	case KVM_GET_CPUID2:
		return fake_cpuid(arg);
	case KVM_SET_TSC_KHZ:
		return kvm_mode & K_TSC_SCALING ? 0 : (errno = EINVAL, -1);
	case KVM_SET_MSRS: {
		const struct kvm_msrs *m = arg;

		if (kvm_mode & K_REFUSE_MSRS)
			for (uint32_t i = 0; i < m->nmsrs; i++)
				if (m->entries[i].index & 1)
					return (int)i;
		return (int)m->nmsrs;
	}
	case KVM_SET_CPUID2:
	case KVM_SET_IRQCHIP:
	case KVM_SET_REGS:
	case KVM_SET_SREGS:
	case KVM_SET_XSAVE:
	case KVM_SET_XCRS:
	case KVM_SET_LAPIC:
	case KVM_SET_VCPU_EVENTS:
	case KVM_SET_DEBUGREGS:
	case KVM_SET_MP_STATE:
		return kvm_mode & K_SET_FAILS ? (errno = EINVAL, -1) : 0;
	default:
		/* KVM_IRQ_LINE and the like: accepted. */
		(void)fd;
		return 0;
	}
}

int __real_ioctl(int fd, unsigned long req, ...);
int __wrap_ioctl(int fd, unsigned long req, ...);

int __wrap_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (fd >= FAKE_KVM && fd < FAKE_VCPU + NR_VCPUS)
		return fake_kvm(fd, req, arg);
	return __real_ioctl(fd, req, arg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC), img = memfd_create("fuzz-disk", MFD_CLOEXEC);

	(void)argc;
	(void)argv;
	/* FUZZ_LOG=1: say why each input is refused (when reproducing one). */
	log_threshold = getenv("FUZZ_LOG") ? LOG_DEBUG : LOG_ERR;
	/* --inspect's report: printed, not looked at. */
	if (null < 0 || img < 0 || dup2(null, STDOUT_FILENO) < 0 || ftruncate(img, IMG_SIZE) < 0)
		abort();
	vm.vm_fd = vm.kvm_fd = -1;      /* the devices are wired to no irqchip */
	vm.cfg.clock = GUEST_CLOCK_REALTIME;
	vm.pio.name = "pio";
	vm.mmio.name = "mmio";
	if (guest_mem_init(&vm.mem, RAM) < 0 || event_loop_init(&vm.loop) < 0)
		abort();
	vm.serial = serial_create(&vm, 0x3f8, 4, null);
	vm.rtc = rtc_create(&vm);
	vm.i8042 = i8042_create(&vm);
	if (!vm.serial || !vm.rtc || !vm.i8042)
		abort();
	fuzz_blk_create(&vm, img, IMG_SIZE, "compat");
	fuzz_net_create(&vm, -1);
	if (virtio_rng_create(&vm) < 0 || vm.nr_virtio != 3)
		abort();
	vm.kvm_fd = FAKE_KVM;
	vm.vm_fd = FAKE_VM;
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		vm.vcpus[i].vm = &vm;
		vm.vcpus[i].id = i;
		vm.vcpus[i].fd = FAKE_VCPU + (int)i;
	}
	return 0;
}

/* libfdt's sequential writer out of room: twice the room. */
static void *grow(void *fdt, size_t *cap)
{
	void *bigger = malloc(*cap * 2);

	if (!bigger || fdt_resize(fdt, bigger, (int)(*cap * 2)))
		abort();
	free(fdt);
	*cap *= 2;
	return bigger;
}

/* The list of nodes and properties as an FDT (malloc'd, *len bytes). */
static void *build(const uint8_t *p, size_t n, size_t *len)
{
	size_t cap = 2 * n + 1024;
	void *fdt = malloc(cap);
	int depth = 0, err;

	if (!fdt || fdt_create(fdt, (int)cap) || fdt_finish_reservemap(fdt) || fdt_begin_node(fdt, ""))
		abort();
	while (n >= 2) {
		uint8_t op = p[0], k = p[1];
		char name[256];
		size_t vlen;

		p += 2;
		n -= 2;
		if (k > n)
			k = (uint8_t)n;
		memcpy(name, p, k);
		name[k] = 0;
		p += k;
		n -= k;
		vlen = op % 4 == 3 ? 4 : op % 4 == 2 && n >= 2 ? (size_t)(p[0] | p[1] << 8) : 0;
		if (op % 4 == 2) {
			p += n >= 2 ? 2 : n;
			n -= n >= 2 ? 2 : n;
		}
		if (vlen > n)
			vlen = n;
		do {
			switch (op % 4) {
			case 0:
				err = fdt_begin_node(fdt, name);
				break;
			case 1:
				err = depth ? fdt_end_node(fdt) : 0;
				break;
			default:
				err = fdt_property(fdt, name, p, (int)vlen);
				break;
			}
		} while (err == -FDT_ERR_NOSPACE && (fdt = grow(fdt, &cap)));
		if (err)
			abort();
		depth += op % 4 == 0 ? 1 : op % 4 == 1 && depth ? -1 : 0;
		p += vlen;
		n -= vlen;
	}
	for (depth++; depth > 0; depth--) {     /* the root too */
		while ((err = fdt_end_node(fdt)) == -FDT_ERR_NOSPACE)
			fdt = grow(fdt, &cap);
		if (err)
			abort();
	}
	while ((err = fdt_finish(fdt)) == -FDT_ERR_NOSPACE)
		fdt = grow(fdt, &cap);
	if (err)
		abort();
	*len = fdt_totalsize(fdt);
	return fdt;
}

static void load(const void *blob, size_t len)
{
	struct state_reader root;

	if (vmstate_print(blob, len) < 0)
		return;         /* state_reader_open refused it: so would everything below */
	vmstate_load_clock(&vm, blob, len);
	if (vmstate_load(&vm, blob, len) == 0) {
		/* What each vCPU thread then does before its first KVM_RUN:
		 * the clock, the TSC and the held-back kvmclock MSRs, from the
		 * values just loaded (--clock=realtime, a file's default). */
		for (unsigned i = 0; i < vm.nr_vcpus; i++)
			x86_vcpu_first_run(&vm.vcpus[i]);
		return;
	}
	if (state_reader_open(&root, blob, len) < 0)
		abort();        /* it opened a moment ago */
	x86_vm_load(&vm, &root);
	for (unsigned i = 0; i < vm.nr_vcpus; i++) {
		x86_vcpu_load_cpuid(&vm.vcpus[i], &root);
		x86_vcpu_load(&vm.vcpus[i], &root);
	}
	serial_load(vm.serial, &root);
	rtc_load(vm.rtc, &root);
	i8042_load(vm.i8042, &root);
	for (unsigned i = 0; i < 3; i++)
		virtio_mmio_load(vm.virtio[i], &root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	void *blob;
	size_t len;

	if (size < 2)
		return 0;
	kvm_mode = data[0];
	/* What a load may have changed that the next one looks at. */
	vm.nr_vcpus = 1 + (data[0] & 1);
	vm.nr_virtio = (data[0] >> 1) & 3;
	vm.tsc_khz = TSC_KHZ;
	vm.restore_clock_pending = false;
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		vm.vcpus[i].nr_deferred = 0;
		vm.vcpus[i].restore_tsc_valid = false;
	}
	if (data[1] & 1) {
		blob = build(data + 2, size - 2, &len);
	} else {
		/* A record's payload is malloc'd: as aligned as that, no larger. */
		len = size - 2;
		blob = malloc(len ? len : 1);
		if (!blob)
			abort();
		memcpy(blob, data + 2, len);
	}
	load(blob, len);
	free(blob);
	return 0;
}
