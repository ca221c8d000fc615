// SPDX-License-Identifier: MIT
/*
 * The generation ID lives in guest RAM, not in device state: a live
 * migration carries it with the rest of RAM (same machine, same ID), and a
 * restore overwrites it before the guest runs. The bytes come from the
 * kernel's CSPRNG: two restores of one snapshot must never share an ID, so
 * nothing derived from time or counters will do.
 *
 * The notification is an edge on the GED's GSI raised after the irqchip
 * state is restored: the IOAPIC forwards it to the local APIC, and the
 * guest takes it when it first runs with interrupts enabled. A guest that
 * has not set the pin up (masked) misses it, as it would on hardware; it
 * reads the ID when its driver starts.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>

#include "arch/x86/layout.h"
#include "devices/vmgenid.h"
#include "vmm/log.h"
#include "vmm/vm.h"

static int new_id(struct vm *vm, uint8_t id[VMGENID_SIZE])
{
	if (getrandom(id, VMGENID_SIZE, 0) != VMGENID_SIZE) {
		pr_err("VM generation ID: getrandom: %s", strerror(errno));
		return -1;
	}
	if (guest_mem_write(&vm->mem, vm->genid.addr, id, VMGENID_SIZE) < 0) {
		pr_err("VM generation ID: 0x%llx is not in guest RAM",
		       (unsigned long long)vm->genid.addr);
		return -1;
	}
	return 0;
}

int vmgenid_boot(struct vm *vm)
{
	uint8_t id[VMGENID_SIZE];

	vm->genid.addr = LAYOUT_VMGENID;
	vm->genid.gsi = IRQ_GED;
	return new_id(vm, id);
}

static void pulse(struct vm *vm, uint32_t gsi)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = 1 };

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		pr_warn("VM generation ID: cannot raise GSI %u: %s", gsi, strerror(errno));
	irq.level = 0;
	ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq);
}

int vmgenid_new_copy(struct vm *vm)
{
	char s[VMGENID_STR_LEN];
	uint8_t id[VMGENID_SIZE];

	if (!vm->genid.addr) {
		pr_debug("VM generation ID: the saved machine has none (format before 1.3)");
		return 0;
	}
	if (new_id(vm, id) < 0)
		return -1;
	pulse(vm, vm->genid.gsi);
	vmgenid_format(id, s);
	pr_debug("VM generation ID: new copy, ID %s", s);
	return 0;
}

int vmgenid_read(const struct vm *vm, uint8_t id[VMGENID_SIZE])
{
	if (!vm->genid.addr)
		return -1;
	return guest_mem_read(&vm->mem, vm->genid.addr, id, VMGENID_SIZE);
}
