// SPDX-License-Identifier: MIT
/*
 * Where control sockets live, and whether one is alive. Shared by the VM
 * side (vmm/control.c) and client mode (vmm/client.c), so both apply the
 * same rules (docs/control-api.md, "Socket location").
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/control.h"
#include "vmm/log.h"
#include "vmm/sock_path.h"

int control_sock_dir(char *buf, size_t size)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	if (xdg && *xdg)
		n = snprintf(buf, size, "%s/minivmm", xdg);
	else
		n = snprintf(buf, size, "/run/minivmm");
	if (n < 0 || (size_t)n >= size) {
		pr_err("XDG_RUNTIME_DIR is too long for a socket path");
		return -1;
	}
	return 0;
}

static bool name_valid(const char *name)
{
	size_t len = strlen(name);

	if (!len || len > CONTROL_NAME_MAX || name[0] == '.' || name[0] == '-')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)name[i]) && !strchr("_.-", name[i]))
			return false;
	return true;
}

int control_default_path(const char *name, char *buf, size_t size)
{
	char dir[CONTROL_PATH_MAX];
	int n;

	if (!name_valid(name)) {
		pr_err("--name '%s': use 1 to %d letters, digits, '_', '.' or '-', "
		       "not starting with '.' or '-'", name, CONTROL_NAME_MAX);
		return -1;
	}
	if (control_sock_dir(dir, sizeof(dir)) < 0)
		return -1;
	n = snprintf(buf, size, "%s/%s.sock", dir, name);
	if (n < 0 || (size_t)n >= size || (size_t)n >= CONTROL_PATH_MAX) {
		pr_err("socket path %s/%s.sock is too long (at most %d bytes)", dir, name,
		       CONTROL_PATH_MAX - 1);
		return -1;
	}
	return 0;
}

/* "<digits>.sock" names a socket by the pid of the VM that made it. */
static pid_t pid_of(const char *name)
{
	char *end;
	long pid = strtol(name, &end, 10);

	if (!isdigit((unsigned char)name[0]) || strcmp(end, ".sock") || pid <= 0 ||
	    pid > INT32_MAX)
		return 0;
	return (pid_t)pid;
}

void control_sweep_stale(const char *dir)
{
	char path[CONTROL_PATH_MAX + 256];
	struct dirent *d;
	DIR *dp = opendir(dir);
	pid_t pid;

	if (!dp)
		return;
	while ((d = readdir(dp))) {
		pid = pid_of(d->d_name);
		/* Its process gone and nobody listening: a VM that was killed.
		 * A live pid may be a VM between bind() and listen(): leave it. */
		if (!pid || (kill(pid, 0) < 0 ? errno != ESRCH : true))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		if (sock_path_probe(path) == SOCK_STALE && unlink(path) == 0)
			pr_debug("control: removed %s (its VM is gone)", path);
	}
	closedir(dp);
}
