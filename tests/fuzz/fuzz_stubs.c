// SPDX-License-Identifier: MIT
/*
 * What the state loaders link against but a fuzz target never calls:
 * vmm/vm.c's pause and stop requests (vmstate_freeze/thaw, the i8042's
 * reset command), which need KVM and vCPU threads. vm.c is not linked into
 * fuzz_state or fuzz_snapshot; reaching one of these is a harness bug.
 */
#include <stdlib.h>

#include "vmm/vm.h"

void vm_pause(struct vm *vm)
{
	(void)vm;
	abort();
}

void vm_resume(struct vm *vm)
{
	(void)vm;
	abort();
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason)
{
	(void)vm;
	(void)reason;
	abort();
}
