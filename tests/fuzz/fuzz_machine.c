// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: arbitrary bytes as the machine record of a stream or a
 * snapshot (the FDT that says vCPUs, RAM, disks, NICs) through
 * machine_load() (migration/machine.c) and the self-describing state reader
 * under it (migration/state.c: libfdt's full check, every getter's size
 * checks), with a command line that confirms nothing and with one that
 * replaces the backends, as a destination's would. No KVM, no files opened.
 */
#include <stdint.h>
#include <string.h>

#include "migration/machine.h"
#include "vmm/log.h"
#include "vmm/vm.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_threshold = LOG_ERR;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm_config none, with, out;

	memset(&none, 0, sizeof(none));
	memset(&with, 0, sizeof(with));
	with.nr_disks = 1;
	with.disks[0].path = "/nonexistent/disk.img";
	with.nr_nets = 1;
	with.nets[0].tap = "mvfuzz0";
	machine_load(data, size, &none, false, &out);
	machine_load(data, size, &with, false, &out);
	return 0;
}
