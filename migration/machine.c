// SPDX-License-Identifier: MIT
#include <stdio.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "devices/virtio_mmio.h"
#include "devices/vmgenid.h"
#include "migration/machine.h"
#include "migration/state.h"
#include "vmm/log.h"

#define MAX_BACKEND_LIST 512

/* The machine record's strings, their NULs included: bounds when read. */
#define DISK_PATH_BYTES 4096
#define SERIAL_BYTES    21
#define TAP_BYTES       16
#define ARCH_BYTES      16

/*
 * Since 1.3: where the generation ID is and which GSI notifies it (the
 * machine's own ACPI tables say so: a restore must write the new ID there),
 * and the ID itself as it was, for --inspect. It does not change while the
 * VM runs, so the value read when the stream starts is the saved one.
 */
static void save_vmgenid(const struct vm *vm, struct state_writer *w)
{
	uint8_t id[VMGENID_SIZE];

	if (vmgenid_read(vm, id) < 0)
		return;
	state_node_begin(w, "vmgenid", 1);
	state_put_u64(w, "addr", vm->genid.addr);
	state_put_u32(w, "gsi", vm->genid.gsi);
	state_put_bytes(w, "id", id, sizeof(id));
	state_node_end(w);
}

static int load_vmgenid(const struct state_reader *m, struct vmgenid *g, uint8_t id[VMGENID_SIZE])
{
	struct state_reader n;

	memset(g, 0, sizeof(*g));
	if (!state_node_exists(m, "vmgenid"))
		return 0;
	if (state_node_open(m, "vmgenid", &n) < 0 || state_check_version(&n, 1) < 0 ||
	    state_get_u64(&n, "addr", &g->addr) < 0 || state_get_u32(&n, "gsi", &g->gsi) < 0 ||
	    state_get_bytes(&n, "id", id, VMGENID_SIZE) < 0)
		return -1;
	/* 8-byte aligned (the specification), below the MMIO hole, a GSI the
	 * IOAPIC has (24 pins). */
	if (!g->addr || g->addr & 7 || g->addr + VMGENID_SIZE > LAYOUT_MMIO_HOLE || g->gsi >= 24) {
		pr_err("stream: the machine's generation ID is at 0x%llx, GSI %u: impossible",
		       (unsigned long long)g->addr, g->gsi);
		return -1;
	}
	return 0;
}

int machine_save(const struct vm *vm, void **blob, size_t *len)
{
	const struct vm_config *c = &vm->cfg;
	struct state_writer w;
	char name[16];

	if (state_writer_init(&w) < 0)
		return -1;
	state_node_begin(&w, "machine", MACHINE_VERSION);
	state_put_str(&w, "arch", "x86_64");
	state_put_u32(&w, "vcpus", vm->nr_vcpus);
	state_put_u64(&w, "ram-size", vm->mem.ram_size);
	state_put_u32(&w, "tsc-khz", vm->tsc_khz);
	for (unsigned i = 0; i < c->nr_disks; i++) {
		snprintf(name, sizeof(name), "disk%u", i);
		state_node_begin(&w, name, 1);
		state_put_str(&w, "path", c->disks[i].path);
		state_put_u32(&w, "readonly", c->disks[i].readonly);
		state_put_str(&w, "serial", c->disks[i].serial ? c->disks[i].serial : "");
		state_node_end(&w);
	}
	for (unsigned i = 0; i < c->nr_nets; i++) {
		snprintf(name, sizeof(name), "net%u", i);
		state_node_begin(&w, name, 1);
		state_put_str(&w, "tap", c->nets[i].tap);
		state_node_end(&w);
	}
	if (c->rng) {
		state_node_begin(&w, "rng0", 1);
		state_node_end(&w);
	}
	save_vmgenid(vm, &w);
	state_node_end(&w);
	if (state_writer_finish(&w, blob, len) < 0) {
		state_writer_free(&w);
		return -1;
	}
	return 0;
}

static int count_nodes(const struct state_reader *m, const char *prefix, unsigned max)
{
	char name[16];
	unsigned n = 0;

	while (n <= max) {
		snprintf(name, sizeof(name), "%s%u", prefix, n);
		if (!state_node_exists(m, name))
			break;
		n++;
	}
	if (n > max) {
		pr_err("stream: more than %u %s devices", max, prefix);
		return -1;
	}
	return (int)n;
}

static int load_disk(const struct state_reader *m, unsigned i, struct disk_config *d)
{
	struct state_reader n;
	const char *serial;
	uint32_t ro;
	char name[16];

	snprintf(name, sizeof(name), "disk%u", i);
	if (state_node_open(m, name, &n) < 0 || state_check_version(&n, 1) < 0 ||
	    state_get_str(&n, "path", &d->path, DISK_PATH_BYTES) < 0 ||
	    state_get_u32(&n, "readonly", &ro) < 0 ||
	    state_get_str(&n, "serial", &serial, SERIAL_BYTES) < 0)
		return -1;
	d->readonly = ro;
	d->serial = *serial ? serial : NULL;
	return 0;
}

static int load_net(const struct state_reader *m, unsigned i, struct net_config *nc)
{
	struct state_reader n;
	char name[16];

	snprintf(name, sizeof(name), "net%u", i);
	memset(nc, 0, sizeof(*nc));
	return state_node_open(m, name, &n) < 0 || state_check_version(&n, 1) < 0 ||
	       state_get_str(&n, "tap", &nc->tap, TAP_BYTES) < 0 ? -1 : 0;
}

/* "disk PATH" onto the list of backends to confirm: the stream's name, escaped. */
static size_t list_add(char *list, size_t used, const char *kind, const char *name)
{
	char shown[MAX_BACKEND_LIST];

	if (used >= MAX_BACKEND_LIST)
		return used;
	return used + (size_t)snprintf(list + used, MAX_BACKEND_LIST - used, "%s%s %s",
				       used ? ", " : "", kind,
				       log_escape(shown, sizeof(shown), name));
}

/* Confirmed backends: the command line's, in order, or the stream's when accepted. */
static int confirm_backends(struct vm_config *out, const struct vm_config *cmdline, bool accept)
{
	char list[MAX_BACKEND_LIST] = "";
	size_t used = 0;

	if (cmdline->nr_disks && cmdline->nr_disks != out->nr_disks) {
		pr_err("the stream's machine has %u disk(s); --disk was given %u time(s)",
		       out->nr_disks, cmdline->nr_disks);
		return -1;
	}
	if (cmdline->nr_nets && cmdline->nr_nets != out->nr_nets) {
		pr_err("the stream's machine has %u NIC(s); --net was given %u time(s)",
		       out->nr_nets, cmdline->nr_nets);
		return -1;
	}
	for (unsigned i = 0; i < out->nr_disks; i++) {
		if (cmdline->nr_disks) {
			/* Same size and mode are checked when the device state loads. */
			out->disks[i].path = cmdline->disks[i].path;
			if (cmdline->disks[i].serial)
				out->disks[i].serial = cmdline->disks[i].serial;
		} else if (!accept) {
			used = list_add(list, used, "disk", out->disks[i].path);
		}
	}
	for (unsigned i = 0; i < out->nr_nets; i++) {
		if (cmdline->nr_nets)
			out->nets[i] = cmdline->nets[i];
		else if (!accept)
			used = list_add(list, used, "tap", out->nets[i].tap);
	}
	if (used) {
		pr_err("the stream needs host backends: %s; confirm them with --disk/--net or accept them with --accept-backends",
		       list);
		return -1;
	}
	return 0;
}

/* The machine's shape comes from the stream; a flag may only repeat it. */
static int check_overrides(const struct vm_config *out, const struct vm_config *cmdline)
{
	if (cmdline->cpus_set && cmdline->ncpus != out->ncpus) {
		pr_err("the stream's machine has %u vCPU(s); --cpus %u cannot change that",
		       out->ncpus, cmdline->ncpus);
		return -1;
	}
	if (cmdline->memory_set && cmdline->ram_size != out->ram_size) {
		pr_err("the stream's machine has %llu MiB of RAM; --memory %llu MiB cannot change that",
		       (unsigned long long)(out->ram_size >> 20),
		       (unsigned long long)(cmdline->ram_size >> 20));
		return -1;
	}
	return 0;
}

static int load_shape(const struct state_reader *m, struct vm_config *out,
		      uint8_t id[VMGENID_SIZE])
{
	const char *arch;
	uint64_t ram;
	int nd, nn;

	if (state_check_version(m, MACHINE_VERSION) < 0 ||
	    state_get_str(m, "arch", &arch, ARCH_BYTES) < 0 ||
	    state_get_u32(m, "vcpus", &out->ncpus) < 0 || state_get_u64(m, "ram-size", &ram) < 0)
		return -1;
	if (strcmp(arch, "x86_64")) {
		char shown[ESCAPED_SIZE(ARCH_BYTES)];

		pr_err("stream is for a %s machine; this minivmm runs x86_64",
		       log_escape(shown, sizeof(shown), arch));
		return -1;
	}
	if (!out->ncpus || out->ncpus > VM_MAX_VCPUS || ram < (4ULL << 20) || ram > (1ULL << 40) ||
	    ram % 4096) {
		pr_err("stream describes an impossible machine (%u vCPUs, %llu bytes of RAM)",
		       out->ncpus, (unsigned long long)ram);
		return -1;
	}
	out->ram_size = ram;
	nd = count_nodes(m, "disk", VM_MAX_DISKS);
	nn = count_nodes(m, "net", VM_MAX_NICS);
	if (nd < 0 || nn < 0)
		return -1;
	out->nr_disks = (unsigned)nd;
	out->nr_nets = (unsigned)nn;
	for (unsigned i = 0; i < out->nr_disks; i++)
		if (load_disk(m, i, &out->disks[i]) < 0)
			return -1;
	for (unsigned i = 0; i < out->nr_nets; i++)
		if (load_net(m, i, &out->nets[i]) < 0)
			return -1;
	out->rng = state_node_exists(m, "rng0");
	return load_vmgenid(m, &out->genid, id);
}

static int machine_parse(const void *blob, size_t len, const struct vm_config *cmdline,
			 struct vm_config *out, uint8_t id[VMGENID_SIZE])
{
	struct state_reader root, m;

	*out = *cmdline;
	out->nr_disks = out->nr_nets = 0;
	if (state_reader_open(&root, blob, len) < 0 || state_node_open(&root, "machine", &m) < 0 ||
	    load_shape(&m, out, id) < 0)
		return -1;
	return 0;
}

int machine_load(const void *blob, size_t len, const struct vm_config *cmdline, bool accept,
		 struct vm_config *out)
{
	uint8_t id[VMGENID_SIZE];

	if (machine_parse(blob, len, cmdline, out, id) < 0 || check_overrides(out, cmdline) < 0)
		return -1;
	return confirm_backends(out, cmdline, accept);
}

/* The file's own strings, escaped: a path could hold a terminal's escape
 * sequences or a newline that forges a line of this output. */
static void print_disk(const struct disk_config *d)
{
	char path[ESCAPED_SIZE(DISK_PATH_BYTES)];
	char serial[ESCAPED_SIZE(SERIAL_BYTES)];

	printf("  virtio-blk %s%s%s%s\n", log_escape(path, sizeof(path), d->path),
	       d->readonly ? " (read-only)" : "", d->serial ? " serial=" : "",
	       d->serial ? log_escape(serial, sizeof(serial), d->serial) : "");
}

int machine_print(const void *blob, size_t len)
{
	struct vm_config c = { 0 }, none = { 0 };
	uint8_t id[VMGENID_SIZE];
	char s[VMGENID_STR_LEN], tap[ESCAPED_SIZE(TAP_BYTES)];

	if (machine_parse(blob, len, &none, &c, id) < 0)
		return -1;
	printf("machine: x86_64, %u vCPU(s), %llu MiB RAM\n", c.ncpus,
	       (unsigned long long)(c.ram_size >> 20));
	for (unsigned i = 0; i < c.nr_disks; i++)
		print_disk(&c.disks[i]);
	for (unsigned i = 0; i < c.nr_nets; i++)
		printf("  virtio-net tap=%s\n", log_escape(tap, sizeof(tap), c.nets[i].tap));
	if (c.rng)
		printf("  virtio-rng\n");
	if (c.genid.addr) {
		vmgenid_format(id, s);
		printf("  vmgenid %s at 0x%llx, notified on GSI %u\n", s,
		       (unsigned long long)c.genid.addr, c.genid.gsi);
	}
	return 0;
}
