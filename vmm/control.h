/* SPDX-License-Identifier: MIT */
/*
 * The control socket: a UNIX stream socket speaking QMP-shaped JSON lines
 * (docs/control-api.md), served on the main event loop. Everything here
 * runs on the main thread; handlers may call vm_pause()/vm_resume().
 *
 * The socket is --api-sock PATH, or by default one per VM in a runtime
 * folder (control_sock_dir()) named after --name or the pid. Client mode
 * (vmm/client.c) finds VMs with the same path functions.
 */
#ifndef VMM_CONTROL_H
#define VMM_CONTROL_H

#include <stddef.h>

#define CONTROL_LINE_MAX    (64 * 1024)     /* a longer request line is refused */
#define CONTROL_OUT_MAX     (1024 * 1024)   /* a client this far behind is dropped */
#define CONTROL_MAX_CLIENTS 8
#define CONTROL_NAME_MAX    64
#define CONTROL_PATH_MAX    108             /* sizeof(sockaddr_un.sun_path) */

struct vm;
struct control;
struct json_object;

/* Open the control socket and serve it. -1 after printing one line: the VM
 * must not start (a live VM owns the path, or the path is unusable). */
int control_init(struct vm *vm);
/* On the way out: SHUTDOWN event with the stop reason, close every client,
 * remove the socket file. A no-op if control_init() did not succeed. */
void control_destroy(struct vm *vm);
/* The VM a command handler acts on. */
struct qmp_request;
struct vm *control_req_vm(struct qmp_request *req);
/* Send an event to every connected client. Takes data's reference (NULL: {}). */
void control_event(struct vm *vm, const char *name, struct json_object *data);

/* A handler whose work must not block the event loop answers later: it
 * calls control_defer() and returns 0; this client's further requests wait
 * until control_answer() (main thread) sends the answer. If the client or
 * the VM goes first, `cancel(job)` is called instead: it must wait for the
 * work and free it, answering nothing. Returns NULL, deferring nothing,
 * where no client asked (control_execute(): unit tests). */
struct control_client;
struct control_client *control_defer(struct qmp_request *req, void (*cancel)(void *job),
				     void *job);
/* The deferred answer: `ret` (its reference taken), or the error `err`. */
void control_answer(struct control_client *c, struct json_object *ret, const char *err);

/* The control state without a socket, and one request line run through the
 * command table as a client would see it: for unit tests. */
struct control *control_create(struct vm *vm);
void control_free(struct control *ctl);
struct json_object *control_execute(struct control *ctl, const char *line, size_t len);

/* Path rules shared with client mode. Each returns -1 after printing why. */
/* $XDG_RUNTIME_DIR/minivmm if XDG_RUNTIME_DIR is set, else /run/minivmm. */
int control_sock_dir(char *buf, size_t size);
/* <sock dir>/<name>.sock; `name` is 1-64 of [A-Za-z0-9_.-], not starting with '.' or '-'. */
int control_default_path(const char *name, char *buf, size_t size);

/* Remove <pid>.sock files in `dir` whose process is gone and that nobody
 * listens on: what VMs killed with SIGKILL leave behind. */
void control_sweep_stale(const char *dir);

#endif
