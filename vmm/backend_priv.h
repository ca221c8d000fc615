/* SPDX-License-Identifier: MIT */
/*
 * Which capabilities opening a VM's backends (its --disk images and --net
 * taps) would take: a destination opens them after GO, long after it began
 * reading a stream, and keeps only what that needs (vmm/lockdown.h,
 * lockdown_receive()). Call with the thread's effective capabilities off
 * (lockdown_effective_off()): the checks ask the kernel what this thread
 * could do without them.
 */
#ifndef VMM_BACKEND_PRIV_H
#define VMM_BACKEND_PRIV_H

#include <stdint.h>

#include "vmm/vm.h"

/* A mask of (1 << CAP_*): CAP_DAC_OVERRIDE for an image this uid and
 * group cannot open as asked, or an --api-sock folder it cannot write;
 * CAP_NET_ADMIN for a tap that does not exist yet (creating one takes it)
 * or that belongs to another user or group (Linux's tun_not_capable()). */
uint32_t backend_caps_needed(const struct vm_config *cfg);

/* The same for a snapshot file a restore reads: CAP_DAC_OVERRIDE if it
 * cannot be read, CAP_LEASE if `lease` (--lazy's guard) and it is not ours. */
uint32_t snapshot_caps_needed(const char *path, bool lease);

#endif
