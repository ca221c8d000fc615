// SPDX-License-Identifier: MIT
/*
 * One thread per vCPU. The run loop checks the VM's stop and pause requests
 * before every KVM_RUN; the main thread sets them and kicks: it writes
 * run->immediate_exit (covers a vCPU about to enter) and sends SIGUSR1
 * (covers one already inside, which returns EINTR).
 */
#include <errno.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/vcpu_arch.h"
#include "arch/x86/vcpu_state.h"
#include "devices/vmgenid.h"
#include "migration/dirty.h"
#include "vmm/log.h"
#include "vmm/vcpu.h"
#include "vmm/lockdown.h"

#define SIG_VCPU_KICK SIGUSR1

static void vcpu_kick_handler(int sig)
{
	(void)sig;
}

int vcpu_signals_init(void)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };

	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: KVM_RUN must return EINTR. */
	return sigaction(SIG_VCPU_KICK, &sa, NULL);
}

int vcpu_create(struct vm *vm, unsigned id)
{
	struct vcpu *vcpu = &vm->vcpus[id];

	vcpu->vm = vm;
	vcpu->id = id;
	vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (vcpu->fd < 0) {
		pr_err("KVM_CREATE_VCPU %u: %s", id, strerror(errno));
		return -1;
	}
	vcpu->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			 vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		pr_err("mmap kvm_run of vCPU %u: %s", id, strerror(errno));
		vcpu->run = NULL;
		goto err;
	}
	return 0;
err:
	vcpu_destroy(vcpu);
	return -1;
}

void vcpu_destroy(struct vcpu *vcpu)
{
	if (vcpu->run)
		munmap(vcpu->run, (size_t)vcpu->vm->run_size);
	if (vcpu->fd >= 0)
		close(vcpu->fd);
	vcpu->run = NULL;
	vcpu->fd = -1;
}

void vcpu_kick(struct vcpu *vcpu)
{
	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (vcpu->started)
		pthread_kill(vcpu->thread, SIG_VCPU_KICK);
}

static bool vcpu_handle_io(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;

	/* String I/O (rep outsb...) arrives as `count` back-to-back accesses. */
	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size)
		io_bus_access(&vcpu->vm->pio, run->io.port, data, run->io.size, is_write);
	return true;
}

static bool vcpu_handle_mmio(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	unsigned len = run->mmio.len > 8 ? 8 : run->mmio.len;

	io_bus_access(&vcpu->vm->mmio, run->mmio.phys_addr, run->mmio.data, len,
		      run->mmio.is_write);
	return true;
}

static bool vcpu_handle_system_event(struct vcpu *vcpu)
{
	switch (vcpu->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm_request_stop(vcpu->vm, VM_STOP_POWEROFF);
		return false;
	case KVM_SYSTEM_EVENT_RESET:
		vm_request_stop(vcpu->vm, VM_STOP_RESET);
		return false;
	default:
		pr_err("vCPU %u: guest crashed (system event %u)", vcpu->id,
		       vcpu->run->system_event.type);
		vm_request_stop(vcpu->vm, VM_STOP_ERROR);
		return false;
	}
}

/* Returns false when this vCPU should stop running. */
static bool vcpu_handle_exit(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		return vcpu_handle_io(vcpu);
	case KVM_EXIT_MMIO:
		return vcpu_handle_mmio(vcpu);
	case KVM_EXIT_INTR:
	case KVM_EXIT_HLT:      /* only without an in-kernel LAPIC: just re-enter */
		return true;
	case KVM_EXIT_DIRTY_RING_FULL:
		dirty_ring_full(vcpu);
		return true;
	case KVM_EXIT_SHUTDOWN:
		/* Triple fault: a PC resets. We end the VMM as for a reboot. */
		vm_request_stop(vcpu->vm, VM_STOP_RESET);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		return vcpu_handle_system_event(vcpu);
	case KVM_EXIT_INTERNAL_ERROR:
	case KVM_EXIT_FAIL_ENTRY:
	default:
		x86_vcpu_report_failure(vcpu);
		vm_request_stop(vcpu->vm, VM_STOP_ERROR);
		return false;
	}
}

/* Park here while the main thread holds the VM paused. */
/*
 * After a PIO/MMIO exit, KVM finishes the instruction (RIP, an IN's
 * result in RAX) only on the next KVM_RUN. State saved before that would
 * make the guest redo an OUT or lose an IN's value. So a vCPU that is about
 * to park re-enters once with immediate_exit set: KVM completes the
 * instruction and returns EINTR without running guest code.
 */
static void vcpu_complete_io(struct vcpu *vcpu)
{
	if (!vcpu->io_pending)
		return;
	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	ioctl(vcpu->fd, KVM_RUN, 0);
	__atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	vcpu->io_pending = false;
}

static void vcpu_pause_point(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;

	if (__atomic_load_n(&vm->pause_count, __ATOMIC_ACQUIRE))
		vcpu_complete_io(vcpu);
	pthread_mutex_lock(&vm->pause_lock);
	if (vm->pause_count) {
		vm->vcpus_paused++;
		pthread_cond_broadcast(&vm->pause_cond);
		while (vm->pause_count && !atomic_load(&vm->stop_reason))
			pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
		vm->vcpus_paused--;
	}
	pthread_mutex_unlock(&vm->pause_lock);
}

/* Auto-converge: give up our share of each throttle period. A pause (the
 * switchover) must not wait for the sleep: vm_pause() wakes us. */
static void vcpu_throttle(struct vm *vm)
{
	unsigned pct = atomic_load(&vm->throttle_pct);
	struct timespec until;

	if (!pct)
		return;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += (long)pct * THROTTLE_PERIOD_US * 10L;  /* pct% of the period, in ns */
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&vm->pause_lock);
	while (!vm->pause_count && !atomic_load(&vm->stop_reason) && atomic_load(&vm->throttle_pct) &&
	       pthread_cond_timedwait(&vm->pause_cond, &vm->pause_lock, &until) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&vm->pause_lock);
}

/*
 * What a restored VM does once, when its guest is about to run again (not
 * before: with --paused its RAM stays exactly as saved until `cont`): the
 * first vCPU here gives it a new generation ID; each vCPU then sets its
 * clock and deferred MSRs.
 */
static void vcpu_first_run(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;

	pthread_mutex_lock(&vm->pause_lock);
	if (vm->genid_new_copy) {
		vm->genid_new_copy = false;
		if (vmgenid_new_copy(vm) < 0)
			vm_request_stop(vm, VM_STOP_ERROR);
	}
	pthread_mutex_unlock(&vm->pause_lock);
	x86_vcpu_first_run(vcpu);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	struct vm *vm = vcpu->vm;
	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", vcpu->id);
	pthread_setname_np(pthread_self(), name);
	vcpu_pause_point(vcpu);         /* --paused parks here before anything runs */
	if (!atomic_load(&vm->stop_reason))
		vcpu_first_run(vcpu);
	lockdown_thread(THREAD_VCPU);
	while (!atomic_load(&vm->stop_reason)) {
		vcpu_pause_point(vcpu);
		if (atomic_load(&vm->stop_reason))
			break;
		if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
			/* EINTR: kicked. EAGAIN: an AP after INIT, not yet SIPI'd. */
			if (errno == EINTR || errno == EAGAIN) {
				vcpu->io_pending = false;       /* KVM completed it on entry */
				__atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
				vcpu_throttle(vm);
				continue;
			}
			pr_err("vCPU %u: KVM_RUN: %s", vcpu->id, strerror(errno));
			vm_request_stop(vm, VM_STOP_ERROR);
			break;
		}
		vcpu->io_pending = vcpu->run->exit_reason == KVM_EXIT_IO ||
				   vcpu->run->exit_reason == KVM_EXIT_MMIO;
		if (!vcpu_handle_exit(vcpu))
			break;
		dirty_ring_check_soft(vcpu);
	}
	pthread_mutex_lock(&vm->pause_lock);
	vm->vcpus_exited++;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	return NULL;
}

int vcpu_start(struct vcpu *vcpu)
{
	int err = pthread_create(&vcpu->thread, NULL, vcpu_thread, vcpu);

	if (err) {
		pr_err("cannot start vCPU %u thread: %s", vcpu->id, strerror(err));
		return -1;
	}
	vcpu->started = true;
	return 0;
}
