// SPDX-License-Identifier: MIT
#include <string.h>

#include "vmm/io_bus.h"
#include "vmm/log.h"

int io_bus_register(struct io_bus *bus, uint64_t base, uint64_t len,
		    io_handler_t handler, void *opaque)
{
	unsigned i;

	if (!len || base + len < base || bus->nr == IO_BUS_MAX_RANGES)
		return -1;
	for (i = 0; i < bus->nr; i++) {
		struct io_range *r = &bus->ranges[i];

		if (base < r->base + r->len && r->base < base + len) {
			pr_err("%s range 0x%llx+0x%llx overlaps 0x%llx", bus->name,
			       (unsigned long long)base, (unsigned long long)len,
			       (unsigned long long)r->base);
			return -1;
		}
		if (base < r->base)
			break;
	}
	memmove(&bus->ranges[i + 1], &bus->ranges[i], (bus->nr - i) * sizeof(bus->ranges[0]));
	bus->ranges[i] = (struct io_range){ base, len, handler, opaque };
	bus->nr++;
	return 0;
}

static const struct io_range *io_bus_find(const struct io_bus *bus, uint64_t addr)
{
	unsigned lo = 0, hi = bus->nr;

	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		const struct io_range *r = &bus->ranges[mid];

		if (addr < r->base)
			hi = mid;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

bool io_bus_access(const struct io_bus *bus, uint64_t addr, uint8_t *data,
		   unsigned len, bool is_write)
{
	const struct io_range *r = io_bus_find(bus, addr);

	if (r && len <= r->len - (addr - r->base)) {
		r->handler(r->opaque, addr - r->base, data, len, is_write);
		return true;
	}
	if (!is_write)
		memset(data, 0xff, len);
	/* Guests probe ports at will (Linux pokes 0x80, 0xCF8...): not a warning. */
	pr_info_ratelimited("unhandled %s %s at 0x%llx (%u bytes)", bus->name,
			    is_write ? "write" : "read", (unsigned long long)addr, len);
	return false;
}
