// SPDX-License-Identifier: MIT
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "migration/dirty.h"
#include "vmm/log.h"
#include "vmm/vm.h"
#include "vmm/lockdown.h"

static uint64_t words(const struct mem_region *r)
{
	return (r->size / GUEST_PAGE_SIZE + 63) / 64;
}

int dirty_ring_enable(struct vm *vm, uint32_t entries)
{
	struct dirty_tracker *t = &vm->dirty;
	struct kvm_enable_cap cap = { 0 };
	int max;

	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->wake, NULL);
	pthread_cond_init(&t->harvested, NULL);
	if (!entries)
		return 0;
	if (entries & (entries - 1)) {
		pr_err("--dirty-ring %u: must be a power of two", entries);
		return -1;
	}
	cap.cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
	max = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, cap.cap);
	if (max <= 0) {
		cap.cap = KVM_CAP_DIRTY_LOG_RING;
		max = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, cap.cap);
	}
	if (max <= 0) {
		pr_info("no KVM dirty ring: using the dirty bitmap");
		return 0;
	}
	cap.args[0] = (uint64_t)entries * sizeof(struct kvm_dirty_gfn);
	if (cap.args[0] > (uint64_t)max) {
		pr_err("--dirty-ring %u: this host's KVM allows at most %zu entries", entries,
		       (size_t)max / sizeof(struct kvm_dirty_gfn));
		return -1;
	}
	if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0) {
		pr_warn("cannot enable the KVM dirty ring (%s): using the dirty bitmap",
			strerror(errno));
		return 0;
	}
	t->ring = true;
	t->ring_entries = entries;
	return 0;
}

int dirty_ring_map_vcpu(struct vcpu *vcpu)
{
	struct dirty_tracker *t = &vcpu->vm->dirty;
	size_t len = (size_t)t->ring_entries * sizeof(struct kvm_dirty_gfn);
	void *p;

	if (!t->ring)
		return 0;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd,
		 (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * getpagesize());
	if (p == MAP_FAILED) {
		pr_err("vCPU %u: cannot map its dirty ring: %s", vcpu->id, strerror(errno));
		return -1;
	}
	vcpu->ring = p;
	vcpu->ring_next = 0;
	return 0;
}

void dirty_ring_unmap_vcpu(struct vcpu *vcpu)
{
	if (vcpu->ring)
		munmap(vcpu->ring, (size_t)vcpu->vm->dirty.ring_entries * sizeof(struct kvm_dirty_gfn));
	vcpu->ring = NULL;
}

static int64_t harvest_ring(struct vm *vm);
static void harvester_start(struct vm *vm);
static void harvester_stop(struct vm *vm);

static int set_slot_logging(struct vm *vm, bool on)
{
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		struct mem_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region slot = {
			.slot = r->slot, .flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0,
			.guest_phys_addr = r->gpa, .memory_size = r->size,
			.userspace_addr = (uintptr_t)r->hva,
		};

		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
			pr_err("dirty logging %s on slot %u: %s", on ? "on" : "off", r->slot,
			       strerror(errno));
			return -1;
		}
	}
	return 0;
}

int dirty_log_start(struct vm *vm)
{
	struct dirty_tracker *t = &vm->dirty;

	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		free(t->bits[i]);
		t->bits[i] = calloc(words(&vm->mem.regions[i]), sizeof(uint64_t));
		if (!t->bits[i]) {
			pthread_mutex_unlock(&t->lock);
			pr_err("out of memory for the dirty bitmap");
			return -1;
		}
	}
	pthread_mutex_unlock(&t->lock);
	if (set_slot_logging(vm, true) < 0)
		return -1;
	t->logging = true;
	harvester_start(vm);
	return 0;
}

void dirty_log_stop(struct vm *vm)
{
	struct dirty_tracker *t = &vm->dirty;

	harvester_stop(vm);
	if (t->logging)
		set_slot_logging(vm, false);
	pthread_mutex_lock(&t->lock);
	/* Drain what the ring still holds, so the next migration starts clean. */
	if (t->logging && t->ring)
		harvest_ring(vm);
	t->logging = false;
	pthread_cond_broadcast(&t->harvested);  /* nobody waits for a harvest that will not come */
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
		free(t->bits[i]);
		t->bits[i] = NULL;
	}
	pthread_mutex_unlock(&t->lock);
}

static void set_bit(struct dirty_tracker *t, const struct vm *vm, uint32_t slot, uint64_t page)
{
	if (slot >= vm->mem.nr_regions || page >= vm->mem.regions[slot].size / GUEST_PAGE_SIZE)
		return;         /* KVM would not: but never trust an index blindly */
	t->bits[slot][page / 64] |= 1ULL << (page % 64);
}

/* Collect and mark for reset every filled entry of one vCPU's ring. */
static uint64_t ring_collect(struct dirty_tracker *t, struct vm *vm, struct vcpu *v)
{
	struct kvm_dirty_gfn *ring = v->ring;
	uint64_t n = 0;

	for (;;) {
		struct kvm_dirty_gfn *e = &ring[v->ring_next % t->ring_entries];
		uint32_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);

		if (!(flags & KVM_DIRTY_GFN_F_DIRTY))
			break;
		set_bit(t, vm, e->slot, e->offset);
		__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		/* Read by the vCPU's soft-limit check, without the lock. */
		__atomic_store_n(&v->ring_next, v->ring_next + 1, __ATOMIC_RELAXED);
		n++;
	}
	return n;
}

static int64_t harvest_ring(struct vm *vm)
{
	struct dirty_tracker *t = &vm->dirty;
	uint64_t n = 0;

	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		n += ring_collect(t, vm, &vm->vcpus[i]);
	/* Re-protect the collected pages now: writes from here on log again. */
	if (n && ioctl(vm->vm_fd, KVM_RESET_DIRTY_RINGS, 0) < 0) {
		pr_err("KVM_RESET_DIRTY_RINGS: %s", strerror(errno));
		return -1;
	}
	return (int64_t)n;
}

static int64_t harvest_bitmap(struct vm *vm)
{
	struct dirty_tracker *t = &vm->dirty;
	uint64_t n = 0;

	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		const struct mem_region *r = &vm->mem.regions[i];
		uint64_t nw = words(r), *buf = calloc(nw, sizeof(uint64_t));
		struct kvm_dirty_log log = { .slot = r->slot, .dirty_bitmap = buf };

		/* Without manual protection, GET_DIRTY_LOG fetches and re-arms in one go. */
		if (!buf || ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
			pr_err("KVM_GET_DIRTY_LOG: %s", buf ? strerror(errno) : "out of memory");
			free(buf);
			return -1;
		}
		for (uint64_t w = 0; w < nw; w++) {
			n += (uint64_t)__builtin_popcountll(buf[w] & ~t->bits[i][w]);
			t->bits[i][w] |= buf[w];
		}
		free(buf);
	}
	return (int64_t)n;
}

/* t->lock held. */
static int64_t harvest_locked(struct vm *vm)
{
	struct dirty_tracker *t = &vm->dirty;
	int64_t n;

	if (!t->logging)
		return 0;
	n = t->ring ? harvest_ring(vm) : harvest_bitmap(vm);
	/* Pages the VMM itself wrote (device DMA) count too. */
	for (unsigned i = 0; n >= 0 && i < vm->mem.nr_regions; i++)
		n += (int64_t)guest_mem_harvest_dirty(&vm->mem.regions[i], t->bits[i]);
	t->harvests++;
	pthread_cond_broadcast(&t->harvested);
	return n;
}

int64_t dirty_harvest(struct vm *vm)
{
	struct dirty_tracker *t = &vm->dirty;
	int64_t n;

	pthread_mutex_lock(&t->lock);
	n = harvest_locked(vm);
	pthread_mutex_unlock(&t->lock);
	return n;
}

/* The harvester: sleeps until a vCPU's ring needs emptying, never on a timer. */
static void *harvester(void *arg)
{
	struct vm *vm = arg;
	struct dirty_tracker *t = &vm->dirty;

	pthread_setname_np(pthread_self(), "dirty-harvest");
	lockdown_thread(THREAD_HARVESTER);
	pthread_mutex_lock(&t->lock);
	while (!t->harvester_stop) {
		if (!t->wanted) {
			pthread_cond_wait(&t->wake, &t->lock);
			continue;
		}
		t->wanted = false;
		if (harvest_locked(vm) < 0) {
			/* No more harvests: release vCPUs waiting for one. */
			t->harvester_stop = true;
			pthread_cond_broadcast(&t->harvested);
			vm_request_stop(vm, VM_STOP_ERROR);
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

static void harvester_start(struct vm *vm)
{
	struct dirty_tracker *t = &vm->dirty;

	if (!t->ring)
		return;
	t->harvester_stop = false;
	t->wanted = false;
	/* Without the thread, a vCPU whose ring fills harvests by itself. */
	__atomic_store_n(&t->harvester_running,
			 pthread_create(&t->harvester, NULL, harvester, vm) == 0, __ATOMIC_RELEASE);
}

static void harvester_stop(struct vm *vm)
{
	struct dirty_tracker *t = &vm->dirty;

	if (!t->harvester_running)
		return;
	pthread_mutex_lock(&t->lock);
	t->harvester_stop = true;
	pthread_cond_signal(&t->wake);
	pthread_mutex_unlock(&t->lock);
	pthread_join(t->harvester, NULL);
	__atomic_store_n(&t->harvester_running, false, __ATOMIC_RELEASE);
}

uint64_t dirty_take(struct vm *vm, unsigned r, uint64_t *out)
{
	struct dirty_tracker *t = &vm->dirty;
	uint64_t n = 0, nw = words(&vm->mem.regions[r]);

	pthread_mutex_lock(&t->lock);
	for (uint64_t w = 0; t->bits[r] && w < nw; w++) {
		n += (uint64_t)__builtin_popcountll(t->bits[r][w]);
		out[w] |= t->bits[r][w];
		t->bits[r][w] = 0;
	}
	pthread_mutex_unlock(&t->lock);
	return n;
}

void dirty_ring_full(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	struct dirty_tracker *t = &vm->dirty;
	uint64_t gen;

	pthread_mutex_lock(&t->lock);
	if (!t->harvester_running) {
		int64_t n = harvest_locked(vm);

		pthread_mutex_unlock(&t->lock);
		if (n < 0)
			vm_request_stop(vm, VM_STOP_ERROR);
		return;
	}
	/* Wait for the harvest: a vCPU that writes faster than we send keeps
	 * stopping here, which is the natural throttle. */
	gen = t->harvests;
	t->wanted = true;
	pthread_cond_signal(&t->wake);
	while (t->harvests == gen && t->logging && !t->harvester_stop &&
	       !atomic_load(&vm->stop_reason))
		pthread_cond_wait(&t->harvested, &t->lock);
	pthread_mutex_unlock(&t->lock);
}

void dirty_ring_check_soft(struct vcpu *vcpu)
{
	struct dirty_tracker *t = &vcpu->vm->dirty;
	uint64_t next;
	uint32_t flags;

	if (!vcpu->ring || !__atomic_load_n(&t->harvester_running, __ATOMIC_RELAXED))
		return;
	next = __atomic_load_n(&vcpu->ring_next, __ATOMIC_RELAXED);
	flags = __atomic_load_n(&vcpu->ring[(next + t->ring_entries / 2) % t->ring_entries].flags,
				__ATOMIC_ACQUIRE);
	if (!(flags & KVM_DIRTY_GFN_F_DIRTY))
		return;
	pthread_mutex_lock(&t->lock);
	t->wanted = true;
	pthread_cond_signal(&t->wake);
	pthread_mutex_unlock(&t->lock);
}
