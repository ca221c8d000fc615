// SPDX-License-Identifier: MIT
/*
 * Backends' privileges (vmm/backend_priv.h says the contract).
 *
 * Why ask rather than keep every capability until GO: a destination parses
 * hostile bytes for the whole migration, and most hosts give it images it
 * owns and taps made beforehand without an owner, which need nothing. The
 * image check is the kernel's own (faccessat with AT_EACCESS, effective
 * capabilities off); a tap's owner and group are read from sysfs, as the
 * kernel would compare them at TUNSETIFF.
 */
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/capability.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/virtio_blk.h"
#include "devices/virtio_net.h"
#include "vmm/backend_priv.h"

/* /sys/class/net/NAME/FIELD as a number; -2 if it cannot be read. */
static long tap_attr(const char *name, const char *field)
{
	char path[64 + IF_NAMESIZE], buf[32];
	FILE *f;
	long v = -2;

	snprintf(path, sizeof(path), "/sys/class/net/%s/%s", name, field);
	f = fopen(path, "re");
	if (!f)
		return -2;
	if (fgets(buf, sizeof(buf), f))
		v = strtol(buf, NULL, 10);
	fclose(f);
	return v;
}

static int in_my_groups(gid_t g)
{
	gid_t groups[256];
	int n = getgroups(256, groups);

	if (g == getegid())
		return 1;
	for (int i = 0; i < n; i++)
		if (groups[i] == g)
			return 1;
	return 0;
}

static int tap_needs_admin(const char *name)
{
	long owner, group;

	if (!name[0] || strlen(name) >= IF_NAMESIZE || strchr(name, '/'))
		return 1;
	owner = tap_attr(name, "owner");
	group = tap_attr(name, "group");
	if (owner == -2 || group == -2)
		return 1;       /* no such tap (or not a tap): creating one takes it */
	return (owner != -1 && (uid_t)owner != geteuid()) ||
	       (group != -1 && !in_my_groups((gid_t)group));
}

uint32_t backend_caps_needed(const struct vm_config *cfg)
{
	uint32_t caps = 0;

	for (unsigned i = 0; i < cfg->nr_disks; i++) {
		const struct disk_config *d = &cfg->disks[i];

		if (faccessat(AT_FDCWD, d->path, d->readonly ? R_OK : R_OK | W_OK, AT_EACCESS) < 0)
			caps |= 1U << CAP_DAC_OVERRIDE;
	}
	for (unsigned i = 0; i < cfg->nr_nets; i++)
		if (tap_needs_admin(cfg->nets[i].tap))
			caps |= 1U << CAP_NET_ADMIN;
	if (cfg->api_sock) {
		char dir[PATH_MAX];

		snprintf(dir, sizeof(dir), "%s", cfg->api_sock);
		if (faccessat(AT_FDCWD, dirname(dir), W_OK | X_OK, AT_EACCESS) < 0)
			caps |= 1U << CAP_DAC_OVERRIDE;
	}
	return caps;
}

uint32_t snapshot_caps_needed(const char *path, bool lease)
{
	uint32_t caps = 0;
	struct stat st;

	if (faccessat(AT_FDCWD, path, R_OK, AT_EACCESS) < 0)
		caps |= 1U << CAP_DAC_OVERRIDE;
	if (lease && (stat(path, &st) < 0 || st.st_uid != geteuid()))
		caps |= 1U << CAP_LEASE;
	return caps;
}
