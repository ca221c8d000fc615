// SPDX-License-Identifier: MIT
/*
 * VM lifecycle. vm_create() does everything that can fail because of the
 * user's input or the host (exit status 2) before any vCPU runs; vm_run()
 * starts the vCPUs and turns the main thread into the event loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/cpuid.h"
#include "arch/x86/layout.h"
#include "arch/x86/vcpu_arch.h"
#include "devices/acpi_pm.h"
#include "devices/i8042.h"
#include "devices/pvsleep.h"
#include "devices/rtc.h"
#include "devices/serial.h"
#include "devices/virtio_mmio.h"
#include "devices/virtio_rng.h"
#include "devices/vmgenid.h"
#include "migration/migration.h"
#include "vmm/console.h"
#include "vmm/control.h"
#include "vmm/log.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"
#include "vmm/lockdown.h"

#define KERNEL_MAX_SIZE (512 * MiB)
#define KVM_TSS_ADDR    0xFFFBD000UL  /* 3 pages below the 4 GiB top, in the hole */
#define KVM_IDMAP_ADDR  0xFFFBC000ULL

static int kvm_open(struct vm *vm)
{
	int api;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		pr_err("cannot open /dev/kvm: %s%s", strerror(errno),
		       errno == ENOENT ? " (is KVM enabled on this host?)" :
		       errno == EACCES ? " (are you in the kvm group?)" : "");
		return -1;
	}
	api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		pr_err("/dev/kvm speaks API %d, minivmm needs %d", api, KVM_API_VERSION);
		return -1;
	}
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size < (int)sizeof(struct kvm_run)) {
		pr_err("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int kvm_check_vcpus(struct vm *vm)
{
	int max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);

	if (max <= 0)
		max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max > 0 && vm->cfg.ncpus > (unsigned)max) {
		pr_err("--cpus %u: this host's KVM allows at most %d", vm->cfg.ncpus, max);
		return -1;
	}
	return 0;
}

static int kvm_create_vm(struct vm *vm)
{
	uint64_t idmap = KVM_IDMAP_ADDR;

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0UL);
	if (vm->vm_fd < 0) {
		pr_err("KVM_CREATE_VM: %s", strerror(errno));
		return -1;
	}
	/* Intel VMX needs these two pages for real-mode emulation; others ignore them. */
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		pr_debug("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0)
		pr_debug("KVM_SET_TSS_ADDR: %s", strerror(errno));
	/* No PIT: a hardware-reduced ACPI machine has none, Linux calibrates
	 * against kvmclock, and creating one costs a kernel thread and ~2 ms. */
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		pr_err("KVM_CREATE_IRQCHIP: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void *kvm_add_memory(void *arg)
{
	struct vm *vm = arg;

	pthread_setname_np(pthread_self(), "memslots");
	lockdown_thread(THREAD_MEMSLOTS);
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		struct mem_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region slot = {
			.slot = r->slot, .guest_phys_addr = r->gpa,
			.memory_size = r->size, .userspace_addr = (uintptr_t)r->hva,
		};

		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
			pr_err("KVM_SET_USER_MEMORY_REGION (slot %u): %s", r->slot, strerror(errno));
			return (void *)-1L;
		}
	}
	return NULL;
}

/*
 * A memslot update waits for an SRCU grace period (~5 ms here), most of
 * the VM's start-up time; nothing else before KVM_RUN needs the slots, so
 * it runs beside device, kernel and vCPU set-up.
 */
static int kvm_add_memory_start(struct vm *vm)
{
	if (pthread_create(&vm->memslot_thread, NULL, kvm_add_memory, vm) == 0) {
		vm->memslot_pending = true;
		return 0;
	}
	return kvm_add_memory(vm) ? -1 : 0;
}

static int kvm_add_memory_wait(struct vm *vm)
{
	void *ret = NULL;

	if (!vm->memslot_pending)
		return 0;
	pthread_join(vm->memslot_thread, &ret);
	vm->memslot_pending = false;
	return ret ? -1 : 0;
}

static int legacy_devices_create(struct vm *vm)
{
	vm->serial = serial_create(vm, PORT_COM1, IRQ_COM1, STDOUT_FILENO);
	vm->i8042 = i8042_create(vm);
	vm->rtc = rtc_create(vm);
	if (!vm->serial || !vm->i8042 || !vm->rtc || acpi_pm_init(vm) < 0 ||
	    pvsleep_init(vm) < 0) {
		pr_err("cannot create the legacy devices");
		return -1;
	}
	return 0;
}

/* Virtio devices in a fixed order (disks, NICs, rng): the order decides
 * each one's MMIO window and IRQ, which a snapshot must reproduce. */
static int virtio_devices_create(struct vm *vm)
{
	for (unsigned i = 0; i < vm->cfg.nr_disks; i++)
		if (virtio_blk_create(vm, &vm->cfg.disks[i]) < 0)
			return -1;
	for (unsigned i = 0; i < vm->cfg.nr_nets; i++)
		if (virtio_net_create(vm, &vm->cfg.nets[i]) < 0)
			return -1;
	if (vm->cfg.rng && virtio_rng_create(vm) < 0)
		return -1;
	return 0;
}

static int acpi_setup(struct vm *vm, uint64_t *rsdp, uint64_t *size)
{
	static uint8_t buf[LAYOUT_ACPI_SIZE];
	struct acpi_config cfg = {
		.ncpus = vm->nr_vcpus, .ioapic_addr = LAYOUT_IOAPIC,
		.lapic_addr = LAYOUT_LAPIC, .sleep_ctl_port = PORT_ACPI_SLEEP_CTL,
		.sleep_sts_port = PORT_ACPI_SLEEP_STS, .s5_slp_typ = ACPI_S5_SLP_TYP,
		.vmgenid_addr = vm->genid.addr, .ged_gsi = vm->genid.gsi,
	};
	size_t n;

	for (unsigned i = 0; i < vm->nr_virtio; i++) {
		const struct virtio_device *d = vm->virtio[i];

		cfg.mmio_devs[i] = (struct acpi_mmio_dev){ d->base, VIRTIO_MMIO_SIZE, d->irq };
	}
	cfg.nr_mmio_devs = vm->nr_virtio;
	n = acpi_build(buf, sizeof(buf), LAYOUT_ACPI_START, &cfg);
	if (!n || guest_mem_write(&vm->mem, LAYOUT_ACPI_START, buf, n) < 0) {
		pr_err("cannot build the ACPI tables");
		return -1;
	}
	*rsdp = LAYOUT_ACPI_START;
	*size = n;
	return 0;
}

static int load_kernel(struct vm *vm)
{
	struct boot_config bc = { .protocol = vm->cfg.protocol, .cmdline = vm->cfg.cmdline };
	uint8_t *kernel = NULL, *initrd = NULL;
	size_t ksize = 0;
	int ret = -1;

	if (acpi_setup(vm, &bc.rsdp_gpa, &bc.acpi_size) < 0)
		return -1;
	bc.acpi_gpa = bc.rsdp_gpa;
	if (read_file(vm->cfg.kernel, KERNEL_MAX_SIZE, &kernel, &ksize) < 0)
		goto out;
	if (vm->cfg.initrd &&
	    read_file(vm->cfg.initrd, vm->cfg.ram_size, &initrd, &bc.initrd_size) < 0)
		goto out;
	bc.initrd = initrd;
	ret = x86_load_kernel(&vm->mem, kernel, ksize, &bc, &vm->boot);
out:
	free(kernel);
	free(initrd);
	return ret;
}

static int vcpus_create(struct vm *vm)
{
	int khz;

	vm->cpuid = cpuid_get_supported(vm->kvm_fd);
	if (!vm->cpuid)
		return -1;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vm->vcpus[i].fd = -1;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (vcpu_create(vm, i) < 0 || dirty_ring_map_vcpu(&vm->vcpus[i]) < 0)
			return -1;
	/* The TSC rate goes into CPUID, so ask before setting any CPUID. */
	khz = ioctl(vm->vcpus[0].fd, KVM_GET_TSC_KHZ, 0);
	vm->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (x86_vcpu_init(&vm->vcpus[i]) < 0)
			return -1;
	/* Only now that every vCPU exists (PLATFORM.md: AP start-up). */
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (x86_vcpu_lapic_init(&vm->vcpus[i]) < 0)
			return -1;
	return 0;
}

static void cond_init_monotonic(pthread_cond_t *c)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(c, &a);
	pthread_condattr_destroy(&a);
}

int vm_create(struct vm *vm, const struct vm_config *cfg)
{
	memset(vm, 0, sizeof(*vm));
	vm->created = true;
	vm->cfg = *cfg;
	vm->kvm_fd = vm->vm_fd = vm->stop_efd = vm->signal_fd = -1;
	vm->loop.epfd = -1;
	vm->nr_vcpus = cfg->ncpus;
	vm->pio.name = "pio";
	vm->mmio.name = "mmio";
	pthread_mutex_init(&vm->pause_lock, NULL);
	cond_init_monotonic(&vm->pause_cond);  /* throttled vCPUs wait with a deadline */
	/* --memory is checked so too; a stream's machine is checked here,
	 * before anything is allocated. */
	if (cfg->ram_size > guest_mem_host_limit()) {
		pr_err("the machine has %llu MiB of RAM, more than this host has (%llu MiB)",
		       (unsigned long long)(cfg->ram_size >> 20),
		       (unsigned long long)(guest_mem_host_limit() >> 20));
		return EXIT_USAGE;
	}
	if (kvm_open(vm) < 0 || kvm_check_vcpus(vm) < 0)
		return EXIT_USAGE;
	/* Devices register with the loop as they are created. */
	if (event_loop_init(&vm->loop) < 0)
		return EXIT_VM_FAILURE;
	if (guest_mem_init(&vm->mem, cfg->ram_size) < 0)
		return EXIT_USAGE;
	if (cfg->prepare_ram && cfg->prepare_ram(vm, cfg->prepare_opaque) < 0)
		return EXIT_USAGE;
	if (kvm_create_vm(vm) < 0 || kvm_add_memory_start(vm) < 0)
		return EXIT_VM_FAILURE;
	if (dirty_ring_enable(vm, cfg->dirty_ring) < 0)
		return EXIT_USAGE;
	if (legacy_devices_create(vm) < 0)
		return EXIT_VM_FAILURE;
	if (virtio_devices_create(vm) < 0)
		return EXIT_USAGE;
	/* A restored VM gets its RAM, ACPI tables and registers from the stream,
	 * and its generation ID where the stream's tables put it. */
	if (cfg->incoming)
		vm->genid = cfg->genid;
	else if (vmgenid_boot(vm) < 0 || load_kernel(vm) < 0)
		return EXIT_USAGE;
	if (vcpus_create(vm) < 0 || kvm_add_memory_wait(vm) < 0)
		return EXIT_VM_FAILURE;
	if (!cfg->incoming && x86_vcpu_set_boot_regs(&vm->vcpus[0], &vm->boot) < 0)
		return EXIT_VM_FAILURE;
	if (migration_init(vm) < 0)
		return EXIT_VM_FAILURE;
	vm->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_efd < 0)
		return EXIT_VM_FAILURE;
	return EXIT_OK;
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason)
{
	int expected = VM_RUNNING;

	if (atomic_compare_exchange_strong(&vm->stop_reason, &expected, (int)reason))
		eventfd_write(vm->stop_efd, 1);
}

static void vm_kick_all(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
}

void vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	vm->pause_count++;
	pthread_cond_broadcast(&vm->pause_cond);        /* throttled vCPUs wake now */
	pthread_mutex_unlock(&vm->pause_lock);
	vm_kick_all(vm);
	pthread_mutex_lock(&vm->pause_lock);
	while (vm->vcpus_paused + vm->vcpus_exited < vm->nr_vcpus)
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	pthread_mutex_unlock(&vm->pause_lock);
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	if (vm->pause_count)
		vm->pause_count--;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

/* Kicks every vCPU each period while throttling; the vCPUs then sleep. */
static void *throttle_thread(void *arg)
{
	struct vm *vm = arg;
	struct timespec ts = { 0, THROTTLE_PERIOD_US * 1000L };

	pthread_setname_np(pthread_self(), "throttle");
	lockdown_thread(THREAD_THROTTLE);
	while (atomic_load(&vm->throttle_pct) && !atomic_load(&vm->stop_reason)) {
		nanosleep(&ts, NULL);
		vm_kick_all(vm);
	}
	return NULL;
}

void vm_set_throttle(struct vm *vm, unsigned pct)
{
	atomic_store(&vm->throttle_pct, pct > 99 ? 99 : pct);
	if (pct && !vm->throttle_running) {
		vm->throttle_running = pthread_create(&vm->throttle_thread, NULL,
						      throttle_thread, vm) == 0;
	} else if (!pct && vm->throttle_running) {
		pthread_join(vm->throttle_thread, NULL);
		vm->throttle_running = false;
	}
}

int vm_flush_backends(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_virtio; i++)
		if (virtio_mmio_flush(vm->virtio[i]) < 0)
			return -1;
	return 0;
}

void vm_release_backends(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_virtio; i++)
		virtio_mmio_release(vm->virtio[i]);
}

int vm_attach_backends(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_virtio; i++)
		if (virtio_mmio_attach(vm->virtio[i]) < 0)
			return -1;
	return 0;
}

bool vm_is_paused(struct vm *vm)
{
	bool paused;

	pthread_mutex_lock(&vm->pause_lock);
	paused = vm->pause_count > 0;
	pthread_mutex_unlock(&vm->pause_lock);
	return paused;
}

static void vm_on_stop(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	eventfd_t v;

	(void)events;
	eventfd_read(vm->stop_efd, &v);
	if (atomic_load(&vm->stop_reason))
		vm->loop.stop = true;
}

static void vm_on_signal(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	struct signalfd_siginfo si;

	(void)events;
	if (read(vm->signal_fd, &si, sizeof(si)) == sizeof(si))
		pr_info("signal %u: shutting down", si.ssi_signo);
	vm_request_stop(vm, VM_STOP_QUIT);
}

static int vm_signals_setup(struct vm *vm)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	/* Blocked in every thread (vCPU threads inherit the mask), read here. */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	vm->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (vm->signal_fd < 0 || vcpu_signals_init() < 0) {
		pr_err("signal setup: %s", strerror(errno));
		return -1;
	}
	return event_loop_add(&vm->loop, vm->signal_fd, EPOLLIN, vm_on_signal, vm);
}

static int vm_exit_status(struct vm *vm)
{
	switch (atomic_load(&vm->stop_reason)) {
	case VM_STOP_POWEROFF:
		pr_info("guest powered off");
		return EXIT_OK;
	case VM_STOP_RESET:
		pr_info("guest reset");
		return EXIT_OK;
	case VM_STOP_QUIT:
		return EXIT_OK;
	case VM_STOP_MIGRATED:
		pr_info("VM migrated away");
		return EXIT_OK;
	default:
		return EXIT_VM_FAILURE;
	}
}

/* With -vv: where each vCPU was when the VM stopped (a stuck guest's clue). */
static void vm_debug_where(struct vm *vm)
{
	if (log_threshold < LOG_DEBUG)
		return;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct kvm_regs r;
		struct kvm_sregs s;

		if (ioctl(vm->vcpus[i].fd, KVM_GET_REGS, &r) == 0 &&
		    ioctl(vm->vcpus[i].fd, KVM_GET_SREGS, &s) == 0)
			pr_debug("vCPU %u stopped at RIP 0x%llx (CS 0x%x, CR0 0x%llx, CR3 0x%llx)", i,
				 (unsigned long long)r.rip, s.cs.selector, (unsigned long long)s.cr0,
				 (unsigned long long)s.cr3);
	}
}

int vm_prepare_run(struct vm *vm)
{
	if (vm->prepared)
		return EXIT_OK;
	/* --paused: the vCPU threads park at once, until `cont`; set before
	 * the control socket opens, so nobody ever sees it running. */
	if (vm->cfg.start_paused)
		vm->pause_count = 1;    /* no thread yet: nothing to wait for */
	if (vm_signals_setup(vm) < 0 ||
	    event_loop_add(&vm->loop, vm->stop_efd, EPOLLIN, vm_on_stop, vm) < 0 ||
	    console_init(vm) < 0)
		return EXIT_VM_FAILURE;
	if (control_init(vm) < 0)
		return EXIT_USAGE;
	vm->prepared = true;
	return EXIT_OK;
}

int vm_run(struct vm *vm)
{
	int ret = vm_prepare_run(vm);

	if (ret != EXIT_OK)
		goto stop;
	ret = EXIT_VM_FAILURE;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (vcpu_start(&vm->vcpus[i]) < 0) {
			vm_request_stop(vm, VM_STOP_ERROR);
			break;
		}
	/* Set-up is over: from here on the event loop and what commands do. */
	lockdown_thread(THREAD_MAIN);
	if (event_loop_run(&vm->loop) < 0)
		vm_request_stop(vm, VM_STOP_ERROR);
	ret = vm_exit_status(vm);
stop:
	vm_request_stop(vm, VM_STOP_ERROR);     /* no-op if already stopping */
	pthread_mutex_lock(&vm->pause_lock);    /* parked vCPUs see stop_reason */
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	if (vm->stop_hook)
		vm->stop_hook(vm->stop_hook_opaque);
	vm_kick_all(vm);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i].started)
			pthread_join(vm->vcpus[i].thread, NULL);
	vm_debug_where(vm);
	control_destroy(vm);
	console_restore(vm);
	return ret;
}

void vm_destroy(struct vm *vm)
{
	if (!vm->created)       /* failed before vm_create(): nothing to undo */
		return;
	/* vm_run() did these; a failure between vm_prepare_run() and it (an
	 * incoming migration) did not: no stale socket, no raw terminal. */
	control_destroy(vm);
	console_restore(vm);
	kvm_add_memory_wait(vm);
	migration_destroy(vm);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i].vm) {
			dirty_ring_unmap_vcpu(&vm->vcpus[i]);
			vcpu_destroy(&vm->vcpus[i]);
		}
	dirty_log_stop(vm);
	for (unsigned i = 0; i < vm->nr_virtio; i++)
		virtio_mmio_destroy(vm->virtio[i]);
	serial_destroy(vm->serial);
	i8042_destroy(vm->i8042);
	rtc_destroy(vm->rtc);
	free(vm->cpuid);
	event_loop_destroy(&vm->loop);
	guest_mem_destroy(&vm->mem);
	if (vm->stop_efd >= 0)
		close(vm->stop_efd);
	if (vm->signal_fd >= 0)
		close(vm->signal_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
}
