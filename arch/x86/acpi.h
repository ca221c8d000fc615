/* SPDX-License-Identifier: MIT */
/*
 * ACPI tables built in memory for a hardware-reduced machine: RSDP, XSDT,
 * FADT (HW_REDUCED_ACPI, sleep control/status registers on I/O ports),
 * MADT (one local APIC per vCPU, the IOAPIC), DSDT (COM1 PNP0501, i8042
 * PNP0303, one LNRO0005 device per virtio-mmio window, the VM generation
 * ID VMGENCTR and the Generic Event Device ACPI0013 that notifies it,
 * \_S5_ package).
 * Pure: builds into a caller's buffer that will be copied to `base_gpa`.
 */
#ifndef ARCH_X86_ACPI_H
#define ARCH_X86_ACPI_H

#include <stddef.h>
#include <stdint.h>

#define ACPI_MAX_MMIO_DEVS 32

struct acpi_mmio_dev {
	uint64_t base;
	uint64_t size;
	uint32_t irq;           /* GSI, edge-triggered, active high */
};

struct acpi_config {
	unsigned ncpus;                 /* APIC IDs 0..ncpus-1 */
	uint64_t ioapic_addr;
	uint64_t lapic_addr;
	uint16_t sleep_ctl_port;
	uint16_t sleep_sts_port;
	uint8_t s5_slp_typ;
	unsigned nr_mmio_devs;
	struct acpi_mmio_dev mmio_devs[ACPI_MAX_MMIO_DEVS];
	/* VM generation ID: the ID's guest address (0: no such device) and
	 * the GSI of the Generic Event Device that tells the OS it changed. */
	uint64_t vmgenid_addr;
	uint32_t ged_gsi;
};

/*
 * Build every table into buf (which will live at base_gpa in the guest).
 * The RSDP comes first, at base_gpa (16-byte aligned). Returns the bytes
 * used, or 0 if cap is too small or the config is invalid.
 */
size_t acpi_build(uint8_t *buf, size_t cap, uint64_t base_gpa, const struct acpi_config *cfg);

/* ACPI checksum: the byte that makes the sum of buf[0..len) zero. */
uint8_t acpi_checksum(const uint8_t *buf, size_t len);

#endif
