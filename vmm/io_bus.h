/* SPDX-License-Identifier: MIT */
/*
 * Port I/O and MMIO dispatch. Devices register [base, base+len) with one
 * callback shape for both buses; handlers run on the vCPU thread that made
 * the access and must do their own locking. Unclaimed reads return
 * all-ones, unclaimed writes are dropped (with a rate-limited log line).
 */
#ifndef VMM_IO_BUS_H
#define VMM_IO_BUS_H

#include <stdbool.h>
#include <stdint.h>

#define IO_BUS_MAX_RANGES 64

/* offset is relative to the range base; data holds len bytes (1,2,4,8). */
typedef void (*io_handler_t)(void *opaque, uint64_t offset, uint8_t *data,
			     unsigned len, bool is_write);

struct io_range {
	uint64_t base;
	uint64_t len;
	io_handler_t handler;
	void *opaque;
};

struct io_bus {
	const char *name;               /* "pio" or "mmio", for log lines */
	unsigned nr;
	struct io_range ranges[IO_BUS_MAX_RANGES];   /* sorted by base */
};

int io_bus_register(struct io_bus *bus, uint64_t base, uint64_t len,
		    io_handler_t handler, void *opaque);
/* Returns true if a device claimed the access. */
bool io_bus_access(const struct io_bus *bus, uint64_t addr, uint8_t *data,
		   unsigned len, bool is_write);

#endif
