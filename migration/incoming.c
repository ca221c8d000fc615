// SPDX-License-Identifier: MIT
#include <linux/capability.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/vcpu_state.h"
#include "devices/virtio_mmio.h"
#include "migration/incoming.h"
#include "migration/incoming_stream.h"
#include "migration/lazy_guard.h"
#include "migration/lazy_uffd.h"
#include "migration/machine.h"
#include "migration/migration.h"
#include "migration/ram_file.h"
#include "migration/snapshot.h"
#include "migration/vmstate.h"
#include "vmm/log.h"
#include "vmm/backend_priv.h"
#include "vmm/lockdown.h"

/* --lazy=mmap: the file's RAM area replaces the memfd mappings before KVM sees them. */
static int map_lazily(struct vm *vm, void *opaque)
{
	struct snapshot *s = opaque;

	return snapshot_load_ram(s, vm, true);
}

/* --lazy=uffd: RAM registered for faults before KVM or a device touches it. */
static struct lazy_uffd *lazy_uffd;     /* lives as long as the VM may fault */

static int fault_in_lazily(struct vm *vm, void *opaque)
{
	struct snapshot *s = opaque;

	if (snapshot_check_ram(s, vm) < 0)
		return -1;
	lazy_uffd = lazy_uffd_start(vm, s->fd, s->hdr.ram_offset, s->path);
	return lazy_uffd ? 0 : -1;
}

/* --lazy=ws: the working set in before the guest runs (if the file has one). */
static int prefetch_working_set(const struct snapshot *s, struct vm *vm)
{
	uint64_t count = 0;
	const uint64_t *map = snapshot_working_set(s, vm, &count);

	if (!map) {
		pr_info("lazy restore: %s has no working set: pages come on demand only", s->path);
		return 0;
	}
	return lazy_uffd_prefetch(lazy_uffd, map, count);
}

void incoming_lockdown(const struct vm_config *cmdline, const char *snapshot)
{
	uint32_t caps = 1U << CAP_NET_ADMIN | 1U << CAP_DAC_OVERRIDE;

	lockdown_effective_off();
	if (!cmdline->accept_backends)
		caps = backend_caps_needed(cmdline);
	if (snapshot)
		caps |= snapshot_caps_needed(snapshot, cmdline->lazy);
	lockdown_receive(caps);
}

static int restore_file(struct vm *vm, const struct vm_config *cmdline, const char *path)
{
	static struct snapshot s;       /* lives as long as the VM may fault pages in */
	struct vm_config cfg;
	uint64_t t0, t1;
	int ret;

	if (cmdline->lazy)
		lazy_guard_block_signal();      /* before vm_create() starts threads */
	incoming_lockdown(cmdline, path);       /* the file is hostile until checked */
	if (snapshot_open(&s, path) < 0 ||
	    machine_load(s.machine.payload, s.machine.length, cmdline, cmdline->accept_backends, &cfg) < 0)
		return EXIT_USAGE;
	/* A snapshot may sleep for days: by default its guest wakes to the
	 * right time (docs/cli.md, --clock). */
	if (cfg.clock == GUEST_CLOCK_DEFAULT)
		cfg.clock = GUEST_CLOCK_REALTIME;
	if (cmdline->lazy) {
		cfg.prepare_ram = cmdline->lazy_uffd ? fault_in_lazily : map_lazily;
		cfg.prepare_opaque = &s;
	}
	t0 = now_ns();
	ret = vm_create(vm, &cfg);
	if (ret != EXIT_OK)
		return ret;
	t1 = now_ns();
	if (!cmdline->lazy && snapshot_load_ram(&s, vm, false) < 0)
		return EXIT_USAGE;
	pr_info("restore: VM built in %llu ms, RAM loaded in %llu ms",
		(unsigned long long)(t1 - t0) / 1000000, (unsigned long long)(now_ns() - t1) / 1000000);
	if (vmstate_load(vm, s.state.payload, s.state.length) < 0 ||
	    vmstate_load_clock(vm, s.state.payload, s.state.length) < 0)
		return EXIT_USAGE;
	/* A restore makes a copy, perhaps one of many: a new generation ID
	 * when it first runs (until then RAM is exactly as saved). */
	vm->genid_new_copy = true;
	for (unsigned i = 0; i < vm->nr_virtio; i++)
		virtio_mmio_resume(vm->virtio[i]);
	if (cmdline->lazy_ws && prefetch_working_set(&s, vm) < 0)
		return EXIT_VM_FAILURE;
	if (cmdline->lazy_uffd)
		return lazy_uffd_push(lazy_uffd) < 0 ? EXIT_VM_FAILURE : EXIT_OK;
	if (cmdline->lazy)
		lazy_guard_start(vm, s.fd, path, NULL, NULL);
	return EXIT_OK;
}

int incoming_run(struct vm *vm, const struct vm_config *cmdline)
{
	const char *uri = cmdline->incoming;
	int ret;

	if (!strncmp(uri, "tcp:", 4) || !strncmp(uri, "unix:", 5))
		ret = incoming_stream(vm, cmdline, uri);
	else if (!strncmp(uri, "file:", 5) && uri[5])
		ret = restore_file(vm, cmdline, uri + 5);
	else {
		pr_err("--incoming '%s': unsupported URI (expected file:PATH, tcp:[HOST]:PORT or unix:PATH)",
		       uri);
		return EXIT_USAGE;
	}
	/* Told to quit before GO: the guest never runs here. */
	if (ret != EXIT_OK || atomic_load(&vm->stop_reason))
		return ret;
	return vm_run(vm);
}
