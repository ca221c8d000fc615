// SPDX-License-Identifier: MIT
#include <stdio.h>
#include <stdlib.h>

#include "arch/x86/vcpu_state.h"
#include "devices/i8042.h"
#include "devices/rtc.h"
#include "devices/serial.h"
#include "devices/virtio_mmio.h"
#include "migration/vmstate.h"
#include "vmm/log.h"

void vmstate_freeze(struct vm *vm)
{
	vm_pause(vm);
	for (unsigned i = 0; i < vm->nr_virtio; i++)
		virtio_mmio_quiesce(vm->virtio[i]);
}

void vmstate_thaw(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_virtio; i++)
		virtio_mmio_resume(vm->virtio[i]);
	vm_resume(vm);
}

int vmstate_save(struct vm *vm, void **blob, size_t *len)
{
	struct state_writer w;

	if (state_writer_init(&w) < 0)
		return -1;
	if (x86_vm_save(vm, &w) < 0)
		goto err;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (x86_vcpu_save(&vm->vcpus[i], &w) < 0)
			goto err;
	/* The legacy devices; ACPI PM's registers hold nothing between accesses. */
	serial_save(vm->serial, &w);
	rtc_save(vm->rtc, &w);
	i8042_save(vm->i8042, &w);
	for (unsigned i = 0; i < vm->nr_virtio; i++)
		virtio_mmio_save(vm->virtio[i], &w);
	if (state_writer_finish(&w, blob, len) < 0)
		goto err;
	return 0;
err:
	state_writer_free(&w);
	return -1;
}

int vmstate_load(struct vm *vm, const void *blob, size_t len)
{
	struct state_reader root;

	if (state_reader_open(&root, blob, len) < 0)
		return -1;
	/* The VM node first: it checks the TSC rate, which MSRs depend on. */
	if (x86_vm_load(vm, &root) < 0)
		return -1;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (x86_vcpu_load_cpuid(&vm->vcpus[i], &root) < 0)
			return -1;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (x86_vcpu_load(&vm->vcpus[i], &root) < 0)
			return -1;
	if (serial_load(vm->serial, &root) < 0 || rtc_load(vm->rtc, &root) < 0 ||
	    i8042_load(vm->i8042, &root) < 0)
		return -1;
	for (unsigned i = 0; i < vm->nr_virtio; i++)
		if (virtio_mmio_load(vm->virtio[i], &root) < 0)
			return -1;
	return 0;
}

int vmstate_load_clock(struct vm *vm, const void *blob, size_t len)
{
	struct state_reader root;

	if (state_reader_open(&root, blob, len) < 0)
		return -1;
	return x86_vm_load_clock(vm, &root);
}

int vmstate_print(const void *blob, size_t len)
{
	struct state_reader root, n, c;
	char name[STATE_NAME_SHOWN + 1];

	if (state_reader_open(&root, blob, len) < 0)
		return -1;
	/* The names are the file's: escaped (state.h). */
	for (int ok = state_first_child(&root, &n); ok == 0; ok = state_next_child(&root, &n)) {
		printf("  %-10s version %u\n", log_escape(name, sizeof(name), state_node_name(&n)),
		       n.version);
		for (int k = state_first_child(&n, &c); k == 0; k = state_next_child(&n, &c))
			printf("    %-8s version %u\n",
			       log_escape(name, sizeof(name), state_node_name(&c)), c.version);
	}
	return 0;
}
