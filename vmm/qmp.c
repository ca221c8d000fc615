// SPDX-License-Identifier: MIT
/*
 * QMP request parsing and dispatch. Every request line is hostile input:
 * it is parsed with a bounded nesting depth in strict mode with UTF-8
 * checks, must be exactly one JSON object, and may only carry the members
 * QMP defines. Error messages follow QEMU's wording where QEMU has one, so
 * tools written against QEMU read them the same way.
 */
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "vmm/qmp.h"
#include "vmm/version.h"

#define QMP_MAX_DEPTH 32        /* a request is two levels deep; leave room */

int qmp_error(struct qmp_request *req, const char *class, const char *fmt, ...)
{
	va_list ap;

	/* Keep the first error: it is the cause, later ones are fallout. */
	if (req->err_class)
		return -1;
	req->err_class = class;
	va_start(ap, fmt);
	vsnprintf(req->err_desc, sizeof(req->err_desc), fmt, ap);
	va_end(ap);
	return -1;
}

static bool all_space(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!strchr(" \t\r\n", s[i]))
			return false;
	return true;
}

/* The one JSON value on the line, or NULL with the error recorded. */
static struct json_object *qmp_parse(struct qmp_request *req, const char *line, size_t len)
{
	struct json_tokener *tok = json_tokener_new_ex(QMP_MAX_DEPTH);
	struct json_object *obj;
	enum json_tokener_error jerr;
	size_t end = len;

	if (!tok || len > INT_MAX) {
		qmp_error(req, QMP_ERR_GENERIC, tok ? "request too long" : "out of memory");
		if (tok)
			json_tokener_free(tok);
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, line, (int)len);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_success)
		end = json_tokener_get_parse_end(tok);
	/* A bare number or literal waits for a delimiter: give it one. */
	if (jerr == json_tokener_continue) {
		obj = json_tokener_parse_ex(tok, " ", 1);
		jerr = json_tokener_get_error(tok);
	}
	if (jerr == json_tokener_continue)
		qmp_error(req, QMP_ERR_GENERIC, "JSON parse error, unexpected end of input");
	else if (jerr != json_tokener_success)
		qmp_error(req, QMP_ERR_GENERIC, "JSON parse error, %s",
			  json_tokener_error_desc(jerr));
	else if (!all_space(line + end, len - end))
		qmp_error(req, QMP_ERR_GENERIC,
			  "JSON parse error, more than one JSON value on the line");
	if (req->err_class) {
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	return obj;
}

static const struct qmp_command *qmp_find(const struct qmp_command *cmds, const char *name)
{
	for (; cmds->name; cmds++)
		if (!strcmp(cmds->name, name))
			return cmds;
	return NULL;
}

static bool arg_known(const struct qmp_command *cmd, const char *key)
{
	for (const char *const *a = cmd->args; a && *a; a++)
		if (!strcmp(*a, key))
			return true;
	return false;
}

static int check_args(struct qmp_request *req, const struct qmp_command *cmd)
{
	if (!req->args)
		return 0;
	json_object_object_foreach(req->args, key, val) {
		(void)val;
		if (!arg_known(cmd, key))
			return qmp_error(req, QMP_ERR_GENERIC, "Parameter '%s' is unexpected", key);
	}
	return 0;
}

/* Check the request's shape and find its command; NULL with the error set. */
static const struct qmp_command *qmp_resolve(struct qmp_request *req, struct json_object *obj,
					     const struct qmp_command *cmds)
{
	struct json_object *exec = NULL, *args = NULL;
	const struct qmp_command *cmd;

	if (!json_object_is_type(obj, json_type_object)) {
		qmp_error(req, QMP_ERR_GENERIC, "QMP input must be a JSON object");
		return NULL;
	}
	json_object_object_foreach(obj, key, val) {
		(void)val;
		if (strcmp(key, "execute") && strcmp(key, "arguments") && strcmp(key, "id")) {
			qmp_error(req, QMP_ERR_GENERIC, "QMP input member '%s' is unexpected", key);
			return NULL;
		}
	}
	if (!json_object_object_get_ex(obj, "execute", &exec)) {
		qmp_error(req, QMP_ERR_GENERIC, "QMP input lacks member 'execute'");
		return NULL;
	}
	if (!json_object_is_type(exec, json_type_string)) {
		qmp_error(req, QMP_ERR_GENERIC, "QMP input member 'execute' must be a string");
		return NULL;
	}
	if (json_object_object_get_ex(obj, "arguments", &args) &&
	    !json_object_is_type(args, json_type_object)) {
		qmp_error(req, QMP_ERR_GENERIC, "QMP input member 'arguments' must be an object");
		return NULL;
	}
	req->args = args;
	cmd = qmp_find(cmds, json_object_get_string(exec));
	if (!cmd) {
		qmp_error(req, QMP_ERR_NOTFOUND, "The command %.64s has not been found",
			  json_object_get_string(exec));
		return NULL;
	}
	return check_args(req, cmd) < 0 ? NULL : cmd;
}

static struct json_object *qmp_reply(struct qmp_request *req, struct json_object *id)
{
	struct json_object *reply = json_object_new_object();
	struct json_object *err;

	if (!reply)
		return NULL;
	if (req->err_class) {
		err = json_object_new_object();
		json_object_object_add(err, "class", json_object_new_string(req->err_class));
		json_object_object_add(err, "desc", json_object_new_string(req->err_desc));
		json_object_object_add(reply, "error", err);
		json_object_put(req->ret);
	} else {
		json_object_object_add(reply, "return",
				       req->ret ? req->ret : json_object_new_object());
	}
	req->ret = NULL;
	if (id)
		json_object_object_add(reply, "id", json_object_get(id));
	return reply;
}

struct json_object *qmp_dispatch(const struct qmp_command *cmds, void *opaque,
				 const char *line, size_t len, struct qmp_request *later)
{
	struct qmp_request req = { .opaque = opaque };
	const struct qmp_command *cmd;
	struct json_object *obj, *id = NULL, *reply;

	obj = qmp_parse(&req, line, len);
	if (obj && json_object_is_type(obj, json_type_object))
		json_object_object_get_ex(obj, "id", &id);
	cmd = req.err_class ? NULL : qmp_resolve(&req, obj, cmds);
	if (cmd && cmd->fn(&req) < 0 && !req.err_class)
		qmp_error(&req, QMP_ERR_GENERIC, "%s failed", cmd->name);
	if (req.deferred && !req.err_class && later) {
		*later = req;
		later->args = NULL;                     /* they live in obj */
		later->id = id ? json_object_get(id) : NULL;
		json_object_put(obj);
		return NULL;
	}
	reply = qmp_reply(&req, id);
	json_object_put(obj);
	return reply;
}

void qmp_defer(struct qmp_request *req)
{
	req->deferred = true;
}

struct json_object *qmp_finish(struct qmp_request *req)
{
	struct json_object *reply = qmp_reply(req, req->id);

	json_object_put(req->id);
	req->id = NULL;
	req->deferred = false;
	return reply;
}

/* The value of argument `name` if present and of type `type`. */
static int qmp_arg(struct qmp_request *req, const char *name, bool required,
		   enum json_type type, const char *tname, struct json_object **out)
{
	if (!req->args || !json_object_object_get_ex(req->args, name, out)) {
		if (required)
			return qmp_error(req, QMP_ERR_GENERIC, "Parameter '%s' is missing", name);
		return 1;
	}
	if (!json_object_is_type(*out, type))
		return qmp_error(req, QMP_ERR_GENERIC,
				 "Invalid parameter type for '%s', expected: %s", name, tname);
	return 0;
}

int qmp_arg_string(struct qmp_request *req, const char *name, bool required, const char **out)
{
	struct json_object *v;
	int ret = qmp_arg(req, name, required, json_type_string, "string", &v);

	if (ret == 0)
		*out = json_object_get_string(v);
	return ret;
}

int qmp_arg_bool(struct qmp_request *req, const char *name, bool required, bool *out)
{
	struct json_object *v;
	int ret = qmp_arg(req, name, required, json_type_boolean, "boolean", &v);

	if (ret == 0)
		*out = json_object_get_boolean(v);
	return ret;
}

int qmp_arg_int(struct qmp_request *req, const char *name, bool required, int64_t *out)
{
	struct json_object *v;
	int ret = qmp_arg(req, name, required, json_type_int, "integer", &v);

	if (ret == 0)
		*out = json_object_get_int64(v);
	return ret;
}

struct json_object *qmp_greeting(void)
{
	struct json_object *g = json_object_new_object();
	struct json_object *qmp = json_object_new_object();
	struct json_object *ver = json_object_new_object();

	json_object_object_add(ver, "minivmm", json_object_new_string(MINIVMM_VERSION));
	json_object_object_add(qmp, "version", ver);
	json_object_object_add(qmp, "capabilities", json_object_new_array());
	json_object_object_add(g, "QMP", qmp);
	return g;
}

struct json_object *qmp_event(const char *name, struct json_object *data)
{
	struct json_object *ev = json_object_new_object();
	struct json_object *ts = json_object_new_object();
	struct timespec now;

	/* Wall-clock time, as QEMU does: clients correlate it with their logs. */
	clock_gettime(CLOCK_REALTIME, &now);
	json_object_object_add(ts, "seconds", json_object_new_int64(now.tv_sec));
	json_object_object_add(ts, "microseconds", json_object_new_int64(now.tv_nsec / 1000));
	json_object_object_add(ev, "event", json_object_new_string(name));
	json_object_object_add(ev, "data", data ? data : json_object_new_object());
	json_object_object_add(ev, "timestamp", ts);
	return ev;
}

const char *qmp_to_string(struct json_object *obj)
{
	return json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
						   JSON_C_TO_STRING_NOSLASHESCAPE);
}
