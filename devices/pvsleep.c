// SPDX-License-Identifier: MIT
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "arch/x86/layout.h"
#include "devices/pvsleep.h"
#include "vmm/vm.h"

static void pvsleep_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	uint32_t v = 0;
	struct timespec ts;

	(void)opaque;
	(void)offset;
	if (len != 4) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	if (!is_write) {
		v = PVSLEEP_MAGIC;
		memcpy(data, &v, 4);
		return;
	}
	memcpy(&v, data, 4);
	if (v > PVSLEEP_MAX_US)
		v = PVSLEEP_MAX_US;
	ts.tv_sec = 0;
	ts.tv_nsec = (long)v * 1000;
	nanosleep(&ts, NULL);   /* EINTR from a kick ends it early: intended */
}

int pvsleep_init(struct vm *vm)
{
	return io_bus_register(&vm->pio, PORT_PVSLEEP, 4, pvsleep_io, NULL);
}
