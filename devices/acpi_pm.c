// SPDX-License-Identifier: MIT
#include <stdbool.h>
#include <stdint.h>

#include "arch/x86/layout.h"
#include "devices/acpi_pm.h"
#include "vmm/vm.h"

#define SLP_EN          (1U << 5)
#define SLP_TYP(v)      (((v) >> 2) & 7)

static void acpi_pm_sleep_ctl(void *opaque, uint64_t offset, uint8_t *data, unsigned len,
			      bool is_write)
{
	struct vm *vm = opaque;

	(void)offset;
	if (!is_write) {
		for (unsigned i = 0; i < len; i++)
			data[i] = 0;
		return;
	}
	if ((data[0] & SLP_EN) && SLP_TYP(data[0]) == ACPI_S5_SLP_TYP)
		vm_request_stop(vm, VM_STOP_POWEROFF);
}

static void acpi_pm_sleep_sts(void *opaque, uint64_t offset, uint8_t *data, unsigned len,
			      bool is_write)
{
	(void)opaque;
	(void)offset;
	/* Wake status never set: we do not implement sleep states other than S5. */
	if (!is_write)
		for (unsigned i = 0; i < len; i++)
			data[i] = 0;
}

int acpi_pm_init(struct vm *vm)
{
	if (io_bus_register(&vm->pio, PORT_ACPI_SLEEP_CTL, 1, acpi_pm_sleep_ctl, vm) < 0)
		return -1;
	return io_bus_register(&vm->pio, PORT_ACPI_SLEEP_STS, 1, acpi_pm_sleep_sts, vm);
}
