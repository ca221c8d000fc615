// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: arbitrary bytes as one control-socket request line
 * through the QMP layer (vmm/qmp.c): strict JSON with a bounded depth, the
 * request's shape ("execute", "arguments", "id"), command lookup, the
 * per-command list of accepted argument names, and every typed argument
 * getter, against a table shaped like the real one (vmm/control_cmds.c)
 * whose handlers read their arguments as the real ones do but touch no VM.
 * The reply is serialised each time, as the socket would send it.
 */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/log.h"
#include "vmm/qmp.h"

static int no_args(struct qmp_request *req)
{
	(void)req;
	return 0;
}

/* Every argument of migrate-set-parameters, typed as the real handler reads them. */
static int set_parameters(struct qmp_request *req)
{
	int64_t downtime = -1, bw = -1, stall = -1;
	const char *pc = NULL, *tls = NULL;

	if (qmp_arg_string(req, "postcopy-start", false, &pc) < 0 ||
	    qmp_arg_string(req, "tls-creds", false, &tls) < 0 ||
	    qmp_arg_int(req, "downtime-limit", false, &downtime) < 0 ||
	    qmp_arg_int(req, "max-bandwidth", false, &bw) < 0 ||
	    qmp_arg_int(req, "stall-timeout", false, &stall) < 0)
		return -1;
	req->ret = json_object_new_object();
	json_object_object_add(req->ret, "echo", json_object_new_string(tls ? tls : ""));
	return 0;
}

static int migrate(struct qmp_request *req)
{
	const char *uri;
	bool resume = false, checkpoint = false;

	if (qmp_arg_string(req, "uri", true, &uri) < 0 ||
	    qmp_arg_bool(req, "resume", false, &resume) < 0 ||
	    qmp_arg_bool(req, "checkpoint", false, &checkpoint) < 0)
		return -1;
	if (!strncmp(uri, "defer", 5))
		qmp_defer(req);
	return 0;
}

static int digest(struct qmp_request *req)
{
	bool chunks = true;

	return qmp_arg_bool(req, "chunks", false, &chunks);
}

static const char *const set_params_args[] = { "downtime-limit", "max-bandwidth",
					       "stall-timeout", "postcopy-start", "tls-creds",
					       NULL };
static const char *const migrate_args[] = { "uri", "resume", "checkpoint", NULL };
static const char *const digest_args[] = { "chunks", NULL };

static const struct qmp_command cmds[] = {
	{ "qmp_capabilities", no_args, NULL },
	{ "query-status", no_args, NULL },
	{ "stop", no_args, NULL },
	{ "migrate-set-parameters", set_parameters, set_params_args },
	{ "migrate", migrate, migrate_args },
	{ "query-ram-digest", digest, digest_args },
	{ NULL, NULL, NULL },
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_threshold = LOG_ERR;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qmp_request later;
	struct json_object *reply;

	if (size > 64 * 1024)           /* CONTROL_LINE_MAX: longer lines never get here */
		return 0;
	memset(&later, 0, sizeof(later));
	reply = qmp_dispatch(cmds, NULL, (const char *)data, size, &later);
	if (!reply && later.deferred)
		reply = qmp_finish(&later);     /* drops later.id */
	if (reply)
		qmp_to_string(reply);
	json_object_put(reply);
	return 0;
}
