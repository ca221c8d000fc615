/* SPDX-License-Identifier: MIT */
/*
 * VM generation ID (Microsoft's "Virtual Machine Generation ID"): 16 random
 * bytes in reserved guest memory, described in the DSDT (VGEN, ADDR), that
 * change whenever the guest becomes a new copy of itself — at every boot and
 * at every restore of a snapshot — so it can reseed its RNG and forget
 * anything that must be unique. A live migration moves the machine and keeps
 * the ID (it travels in guest RAM). The OS is told of a change by a pulse on
 * the Generic Event Device's interrupt (ACPI0013, whose _EVT notifies VGEN).
 *
 * This module touches guest RAM at the ID's address and the GED's GSI only.
 */
#ifndef DEVICES_VMGENID_H
#define DEVICES_VMGENID_H

#include <stdbool.h>
#include <stdint.h>

#define VMGENID_SIZE    16
#define VMGENID_STR_LEN 37      /* 8-4-4-4-12 hex digits and a NUL */

struct vm;

struct vmgenid {
	uint64_t addr;          /* guest address of the ID; 0: this machine has none */
	uint32_t gsi;           /* the GED's interrupt */
};

/* A fresh boot: the ID at LAYOUT_VMGENID, notified on IRQ_GED, new bytes. */
int vmgenid_boot(struct vm *vm);

/*
 * The VM is a new copy of a saved one (its RAM and irqchip are restored):
 * write new random bytes over the ID and pulse the GED's interrupt, so the
 * guest hears of it as soon as it runs. Nothing for a machine without one
 * (a snapshot from before format 1.3). Returns -1 if RAM cannot be written.
 */
int vmgenid_new_copy(struct vm *vm);

/* The ID as the guest sees it now (read from guest RAM). -1 if none. */
int vmgenid_read(const struct vm *vm, uint8_t id[VMGENID_SIZE]);

/* The ID as a GUID string in memory byte order, e.g. for query-vm-generation-id.
 * Inline: --inspect and the machine-record fuzzer print it without the device. */
static inline void vmgenid_format(const uint8_t id[VMGENID_SIZE], char out[VMGENID_STR_LEN])
{
	static const char hex[] = "0123456789abcdef";

	for (unsigned i = 0; i < VMGENID_SIZE; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*out++ = '-';
		*out++ = hex[id[i] >> 4];
		*out++ = hex[id[i] & 15];
	}
	*out = 0;
}

#endif
