/* SPDX-License-Identifier: MIT */
/*
 * QMP-shaped request parsing and command dispatch (docs/control-api.md).
 *
 * Pure: no sockets, no VM. A caller hands in one request line and a table
 * of commands and gets back the reply object. Every way a line can be
 * wrong (not JSON, not an object, no "execute", unknown command, unknown
 * or mistyped arguments) becomes an error reply; nothing here aborts.
 *
 * Adding a command is one table entry: a name, a handler, and the list of
 * argument names it accepts. Handlers read arguments with the qmp_arg_*()
 * helpers, which produce the error reply for a missing or mistyped one.
 */
#ifndef VMM_QMP_H
#define VMM_QMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_object;

#define QMP_ERR_GENERIC  "GenericError"
#define QMP_ERR_NOTFOUND "CommandNotFound"

struct qmp_request {
	void *opaque;                   /* the dispatcher's caller's context */
	struct json_object *args;       /* "arguments", or NULL when absent */
	struct json_object *ret;        /* handler's result; NULL means {} */
	const char *err_class;          /* set by qmp_error() */
	char err_desc[256];
	struct json_object *id;         /* the request's "id", echoed in its reply */
	bool deferred;                  /* qmp_defer(): the handler answers later */
};

/* 0 with req->ret set (or left NULL), or the value of qmp_error(). */
typedef int (*qmp_handler_t)(struct qmp_request *req);

struct qmp_command {
	const char *name;
	qmp_handler_t fn;
	const char *const *args;        /* accepted argument names, NULL-terminated */
};

/* Run one request line against `cmds` (terminated by a NULL name). Returns
 * a reply object ({"return": ...} or {"error": ...}, with "id" echoed); the
 * caller drops it with json_object_put(). If the handler deferred its
 * answer (qmp_defer()) and `later` is given, returns NULL with the request
 * copied to *later (later->deferred set): qmp_finish() makes its reply. */
struct json_object *qmp_dispatch(const struct qmp_command *cmds, void *opaque,
				 const char *line, size_t len, struct qmp_request *later);
/* In a handler: the answer comes later (the request's arguments do not
 * live past the handler's return). */
void qmp_defer(struct qmp_request *req);
/* The reply to a deferred request, from the ret or error now in it. */
struct json_object *qmp_finish(struct qmp_request *req);

/* Record an error for the reply; returns -1 so handlers can `return qmp_error(...)`. */
int qmp_error(struct qmp_request *req, const char *class, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Argument accessors: 0 and *out set, 1 if absent and optional (*out
 * untouched), -1 with the error recorded if absent and required or of
 * the wrong type. */
int qmp_arg_string(struct qmp_request *req, const char *name, bool required, const char **out);
int qmp_arg_bool(struct qmp_request *req, const char *name, bool required, bool *out);
int qmp_arg_int(struct qmp_request *req, const char *name, bool required, int64_t *out);

/* {"QMP": {"version": {"minivmm": VERSION}, "capabilities": []}} */
struct json_object *qmp_greeting(void);
/* {"event": name, "data": data or {}, "timestamp": {...}}; takes data's reference. */
struct json_object *qmp_event(const char *name, struct json_object *data);
/* One line of wire format (no newline); valid until `obj` is put. */
const char *qmp_to_string(struct json_object *obj);

#endif
