/* SPDX-License-Identifier: MIT */
/*
 * ACPI hardware-reduced sleep registers (FADT SLEEP_CONTROL_REG and
 * SLEEP_STATUS_REG): writing SLP_EN with SLP_TYP = S5 powers the VM off.
 */
#ifndef DEVICES_ACPI_PM_H
#define DEVICES_ACPI_PM_H

struct vm;

int acpi_pm_init(struct vm *vm);

#endif
