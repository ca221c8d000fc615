/* SPDX-License-Identifier: MIT */
/*
 * The one VM this process runs: its configuration, KVM handles, guest RAM,
 * buses, devices and vCPU threads. `struct vm` is the only global state in
 * minivmm; every module gets it (or a device of it) passed in.
 *
 * Threads: the main thread runs the event loop (console, signals, requests
 * from vCPUs); each vCPU thread runs KVM_RUN. A vCPU thread never blocks on
 * anything but its own device handlers. To stop or pause, the main thread
 * sets a request and kicks every vCPU out of KVM_RUN (signal + immediate_exit).
 */
#ifndef VMM_VM_H
#define VMM_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "arch/x86/boot.h"
#include "devices/virtio_blk.h"
#include "devices/vmgenid.h"
#include "devices/virtio_net.h"
#include "migration/dirty.h"
#include "vmm/console.h"
#include "vmm/event_loop.h"
#include "vmm/lockdown.h"
#include "vmm/guest_mem.h"
#include "vmm/io_bus.h"

#define VM_MAX_VCPUS 64
#define VM_MAX_VIRTIO 18        /* IOAPIC pins 5-7 and 9-23 */
#define VM_MAX_DISKS 8
#define VM_MAX_NICS 8

/*
 * What a restored or migrated guest's clock does about the time the VM did
 * not run (docs/cli.md --clock): stand still, or jump by the real time that
 * passed. The default depends on how the guest came (incoming.c).
 */
enum clock_policy {
	GUEST_CLOCK_DEFAULT = 0,
	GUEST_CLOCK_CONTINUE,
	GUEST_CLOCK_REALTIME,
};

/* Process exit statuses (docs/cli.md). */
enum exit_status {
	EXIT_OK = 0,            /* guest powered off or reset, user quit, migrated away */
	EXIT_VM_FAILURE = 1,    /* emulation failure, KVM error at run time */
	EXIT_USAGE = 2,         /* bad flags, bad files, no /dev/kvm */
};

struct vm_config {
	const char *kernel;
	const char *initrd;
	const char *cmdline;
	const char *name;
	const char *api_sock;
	enum boot_protocol protocol;
	unsigned ncpus;
	uint64_t ram_size;
	bool cpus_set, memory_set;      /* given on the command line */
	uint32_t dirty_ring;            /* entries per vCPU; 0 = bitmap */
	struct lockdown_config lockdown; /* --seccomp, --user, --chroot */
	const char *tls_creds;          /* --incoming tcp:/unix: --tls-creds DIR */
	int verbose;
	unsigned nr_disks, nr_nets;
	struct disk_config disks[VM_MAX_DISKS];
	struct net_config nets[VM_MAX_NICS];
	bool rng;
	/* Incoming migration / restore (migration/incoming.c). */
	const char *incoming;           /* URI; no kernel is loaded */
	const char *inspect;            /* --inspect URI */
	bool accept_backends;
	bool defer_backends;            /* open disks/taps at vm_attach_backends() */
	bool lazy;
	bool lazy_uffd;                 /* --lazy=uffd: through userfaultfd */
	bool lazy_ws;                   /* --lazy=ws: uffd, the working set first */
	bool start_paused;
	enum clock_policy clock;        /* --clock; GUEST_CLOCK_DEFAULT: by how it came */
	bool clock_set;                 /* given on the command line */
	/* From the stream's machine description: where its generation ID is. */
	struct vmgenid genid;
	/* Called after guest RAM is mapped, before KVM sees it. */
	int (*prepare_ram)(struct vm *vm, void *opaque);
	void *prepare_opaque;
};

#define VCPU_MAX_DEFERRED 2

struct vcpu_msr {
	uint32_t index;
	uint64_t value;
};

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	bool io_pending;        /* last exit was PIO/MMIO: KVM completes it on re-entry */
	/* Restore: MSRs applied just before the first KVM_RUN. */
	unsigned nr_deferred;
	struct vcpu_msr deferred[VCPU_MAX_DEFERRED];
	bool restore_tsc_valid;         /* the saved IA32_TSC, set again at first run */
	uint64_t restore_tsc;
	/* Dirty ring (migration/dirty.c). */
	struct kvm_dirty_gfn *ring;
	uint64_t ring_next;
};

struct serial;
struct virtio_device;
struct migration;
struct i8042;
struct rtc;
struct control;

/* Why the VM stopped; set once by whoever stops it first. */
enum vm_stop_reason {
	VM_RUNNING = 0,
	VM_STOP_POWEROFF,
	VM_STOP_RESET,
	VM_STOP_QUIT,           /* user: Ctrl-A x, signal, control socket */
	VM_STOP_ERROR,          /* a vCPU hit an error it already reported */
	VM_STOP_MIGRATED,       /* the guest now lives elsewhere (a file, a peer) */
};

struct vm {
	bool created;                   /* vm_create() ran: vm_destroy() has work */
	bool prepared;                  /* vm_prepare_run() done */
	struct vm_config cfg;
	int kvm_fd;
	int vm_fd;
	int run_size;                   /* mmap size of struct kvm_run */
	struct guest_mem mem;
	struct io_bus pio;
	struct io_bus mmio;
	struct event_loop loop;
	struct boot_entry boot;
	struct kvm_cpuid2 *cpuid;       /* supported CPUID, patched per vCPU */
	uint32_t tsc_khz;
	pthread_t memslot_thread;       /* registers RAM with KVM during set-up */
	bool memslot_pending;

	unsigned nr_vcpus;
	struct vcpu vcpus[VM_MAX_VCPUS];

	struct console console;
	struct serial *serial;
	struct i8042 *i8042;
	struct rtc *rtc;
	struct vmgenid genid;
	unsigned nr_virtio;
	struct virtio_device *virtio[VM_MAX_VIRTIO];
	struct migration *mig;
	struct dirty_tracker dirty;
	struct control *control;        /* the control socket (vmm/control.c) */

	/* Stop and pause protocol between the main thread and vCPU threads. */
	_Atomic int stop_reason;        /* enum vm_stop_reason */
	int stop_efd;                   /* eventfd: wakes the main loop on stop */
	int signal_fd;                  /* SIGTERM/SIGINT/SIGHUP */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	unsigned pause_count;           /* vCPUs run only while 0 (nested pauses) */
	/* A completed migration handed the guest over: it never runs here
	 * again (main thread only). */
	bool migrated_away;
	unsigned vcpus_paused;
	unsigned vcpus_exited;
	/* Auto-converge: vCPUs sleep this % of every THROTTLE_PERIOD. */
	_Atomic unsigned throttle_pct;
	pthread_t throttle_thread;
	bool throttle_running;
	/* Restore: KVM_SET_CLOCK when the guest first runs (pause_lock). */
	bool restore_clock_pending;
	uint64_t restore_clock_ns;
	bool genid_new_copy;            /* a new generation ID at the first run */
	uint64_t restore_realtime_ns;   /* host CLOCK_REALTIME at the save; 0: unknown */
	uint64_t restore_skip_ns;       /* real time the guest skips (--clock=realtime) */
	/* Called on the main thread when the VM stops, before vCPUs are joined:
	 * whoever may hold a vCPU (a postcopy page fault) lets it go. */
	void (*stop_hook)(void *opaque);
	void *stop_hook_opaque;
};

/* Build the VM from cfg: KVM, RAM, irqchip, devices, vCPUs, kernel. On
 * failure returns the exit status to use (the error is already printed). */
int vm_create(struct vm *vm, const struct vm_config *cfg);
/* Everything vm_run() needs that can fail (signals, console, control
 * socket), so that an incoming migration can fail before it says READY
 * rather than after GO. Idempotent; returns an exit status. */
int vm_prepare_run(struct vm *vm);
/* Start vCPUs and run the event loop until the VM stops; returns the exit status. */
int vm_run(struct vm *vm);
void vm_destroy(struct vm *vm);

/* Any thread: ask the VM to stop. The first reason wins. */
void vm_request_stop(struct vm *vm, enum vm_stop_reason reason);

/* Bring every vCPU out of KVM_RUN and hold it there / let it go. Pauses
 * nest (a user's `stop` and a snapshot's freeze are independent): vCPUs
 * run again when every vm_pause() has had its vm_resume(). */
void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
bool vm_is_paused(struct vm *vm);

#define THROTTLE_PERIOD_US 10000
/* Slow the guest's vCPUs to (100 - pct)% (0: full speed). Any thread. */
void vm_set_throttle(struct vm *vm, unsigned pct);
/* Frozen VM: what the guest wrote to its disks reaches the images (before
 * a live migration's READY, before a snapshot counts as done). */
int vm_flush_backends(struct vm *vm);
/* Live migration after READY: close taps and drop disk locks, so the
 * destination can take them (the devices are quiesced already). */
void vm_release_backends(struct vm *vm);
/* Open the disks and taps now: an incoming live migration after GO, or a
 * source taking back what it released (the destination will not run the
 * guest). Devices already attached are left alone. */
int vm_attach_backends(struct vm *vm);

#endif
