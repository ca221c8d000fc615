/* SPDX-License-Identifier: MIT */
/*
 * Inside the control socket: its state and its clients, shared by the
 * socket and client machinery (control.c) and the command handlers
 * (control_cmds.c). Nothing outside vmm/control*.c includes this.
 */
#ifndef VMM_CONTROL_INTERNAL_H
#define VMM_CONTROL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "vmm/control.h"
#include "vmm/qmp.h"

struct control_client {
	struct control *ctl;
	int fd;
	bool dead;              /* freed by control_sweep() */
	/* A request whose handler answers later (control_defer()): no further
	 * request of this client runs until that answer is sent. */
	bool busy;
	struct qmp_request pending;
	void (*pending_cancel)(void *job);      /* the VM is going: wait for the job, no reply */
	void *pending_job;
	bool want_out;          /* EPOLLOUT registered */
	size_t in_len;
	char *out;
	size_t out_len, out_cap;
	char in[CONTROL_LINE_MAX];
};

struct control {
	struct vm *vm;
	int listen_fd;
	bool quit;              /* `quit` asked: SHUTDOWN says host-qmp-quit */
	bool user_paused;       /* `stop` (or --paused) holds one of the VM's pauses */
	dev_t dev;              /* our socket file: unlink it only if still ours */
	ino_t ino;
	char path[CONTROL_PATH_MAX];
	int dir_fd;             /* its folder (O_PATH): removable after --chroot too */
	const char *base;       /* its name in that folder (points into path) */
	struct control_client *clients[CONTROL_MAX_CLIENTS];
	struct control_client *current;         /* whose request runs now (NULL: a unit test) */
};

extern const struct qmp_command control_commands[];

#endif
