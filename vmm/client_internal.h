/* SPDX-License-Identifier: MIT */
/* Client mode's connection, shared by client.c and client_migrate.c only. */
#ifndef VMM_CLIENT_INTERNAL_H
#define VMM_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <sys/types.h>

#include "vmm/control.h"

struct json_object;

struct client {
	const char *path;
	int fd;
	pid_t pid;              /* the VM process, from SO_PEERCRED */
	int next_id;
	size_t len;
	char buf[CONTROL_LINE_MAX];
};

long long now_ms(void);
/* Next line as JSON. NULL on EOF (errno 0), timeout (ETIMEDOUT) or error. */
struct json_object *client_read(struct client *c, long long deadline);
void client_read_failed(struct client *c, const char *what);
/* Send {"execute": cmd, "arguments": args (reference taken), "id": n}. */
int client_send_args(struct client *c, const char *cmd, struct json_object *args);
/* The reply to the last request, skipping events. NULL after printing why. */
struct json_object *client_reply(struct client *c, const char *cmd);
/* EOF on the socket, then the VM process gone. */
int client_wait_gone(struct client *c);
int client_migrate(struct client *c, const struct client_request *req);

#endif
