// SPDX-License-Identifier: MIT
/*
 * The control socket's commands (docs/control-api.md): VM status, stop and
 * cont (pauses nest: the user's hold at most one), quit, and the command
 * table; migration commands are in control_migration.c.
 */
#include <json-c/json.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "devices/vmgenid.h"
#include "migration/migration.h"
#include "vmm/control_internal.h"
#include "vmm/control_migration.h"
#include "vmm/log.h"
#include "vmm/qmp.h"
#include "vmm/version.h"
#include "vmm/vm.h"

static struct vm *req_vm(struct qmp_request *req)
{
	return ((struct control *)req->opaque)->vm;
}

struct vm *control_req_vm(struct qmp_request *req)
{
	return req_vm(req);
}

static struct control *ctl_of(struct qmp_request *req)
{
	return req->opaque;
}

static int cmd_qmp_capabilities(struct qmp_request *req)
{
	struct json_object *enable;

	/* We offer no capabilities, so the only valid "enable" is empty. */
	if (!req->args || !json_object_object_get_ex(req->args, "enable", &enable))
		return 0;
	if (!json_object_is_type(enable, json_type_array))
		return qmp_error(req, QMP_ERR_GENERIC,
				 "Invalid parameter type for 'enable', expected: array");
	if (json_object_array_length(enable) > 0)
		return qmp_error(req, QMP_ERR_GENERIC, "Capability '%.64s' not available",
				 json_object_get_string(json_object_array_get_idx(enable, 0)));
	return 0;
}

static int cmd_query_status(struct qmp_request *req)
{
	struct vm *vm = req_vm(req);
	const char *status = "running";

	if (atomic_load(&vm->stop_reason))
		status = "shutdown";
	else if (vm->migrated_away)
		status = "postmigrate";         /* QEMU's name */
	else if (vm_is_paused(vm))
		status = "paused";
	req->ret = json_object_new_object();
	json_object_object_add(req->ret, "status", json_object_new_string(status));
	json_object_object_add(req->ret, "running",
			       json_object_new_boolean(!strcmp(status, "running")));
	return 0;
}

/*
 * Pauses nest (vm_pause() counts): the user's stop/cont hold at most one of
 * them, so `cont` never releases a pause someone else (a migration) holds.
 */
static int cmd_stop(struct qmp_request *req)
{
	struct control *ctl = ctl_of(req);

	if (atomic_load(&ctl->vm->stop_reason))
		return qmp_error(req, QMP_ERR_GENERIC, "the VM is shutting down");
	/* Stopping a stopped VM is not an error and not an event (as in QEMU). */
	if (ctl->user_paused)
		return 0;
	vm_pause(ctl->vm);
	ctl->user_paused = true;
	/* With -v this line follows, in the output, all the guest wrote before. */
	pr_info("control: VM paused");
	control_event(ctl->vm, "STOP", NULL);
	return 0;
}

/*
 * After a GO that no answer followed, the guest may run at the destination:
 * `cont` refuses and says why; `cont {"force": true}` is the operator's word
 * that it does not (two running copies would corrupt their disks).
 */
static int cont_stranded(struct qmp_request *req, struct vm *vm)
{
	char err[256];
	bool force = false;

	if (qmp_arg_bool(req, "force", false, &force) < 0)
		return -1;
	if (!force)
		return qmp_error(req, QMP_ERR_GENERIC, "%s", vm->mig->error);
	if (migration_unstrand(vm, err, sizeof(err)) < 0)
		return qmp_error(req, QMP_ERR_GENERIC, "%s", err);
	control_event(vm, "RESUME", NULL);
	return 1;
}

static int cmd_cont(struct qmp_request *req)
{
	struct control *ctl = ctl_of(req);
	int ret;

	if (atomic_load(&ctl->vm->stop_reason))
		return qmp_error(req, QMP_ERR_GENERIC, "the VM is shutting down");
	if (ctl->vm->migrated_away)
		return qmp_error(req, QMP_ERR_GENERIC,
				 "the guest was migrated away and runs at the destination: it cannot "
				 "resume here");
	if (ctl->vm->mig && ctl->vm->mig->stranded) {
		ret = cont_stranded(req, ctl->vm);
		if (ret <= 0 || !ctl->user_paused)
			return ret < 0 ? -1 : 0;
	}
	if (!ctl->user_paused)
		return 0;
	pr_info("control: VM resumed");
	ctl->user_paused = false;
	vm_resume(ctl->vm);
	control_event(ctl->vm, "RESUME", NULL);
	return 0;
}

static int cmd_quit(struct qmp_request *req)
{
	struct control *ctl = req->opaque;

	/* The reply goes out now; SHUTDOWN and EOF follow from control_destroy(). */
	ctl->quit = true;
	vm_request_stop(ctl->vm, VM_STOP_QUIT);
	return 0;
}

/* QEMU's name and shape: {"guid": "..."}; the bytes in guest memory order. */
static int cmd_query_vm_generation_id(struct qmp_request *req)
{
	uint8_t id[VMGENID_SIZE];
	char s[VMGENID_STR_LEN];

	if (vmgenid_read(req_vm(req), id) < 0)
		return qmp_error(req, QMP_ERR_GENERIC,
				 "this VM has no generation ID (restored from a format before 1.3)");
	vmgenid_format(id, s);
	req->ret = json_object_new_object();
	json_object_object_add(req->ret, "guid", json_object_new_string(s));
	return 0;
}

static int cmd_query_version(struct qmp_request *req)
{
	struct json_object *v = json_object_new_object();
	unsigned major = 0, minor = 0, micro = 0;

	sscanf(MINIVMM_VERSION, "%u.%u.%u", &major, &minor, &micro);
	json_object_object_add(v, "major", json_object_new_int((int)major));
	json_object_object_add(v, "minor", json_object_new_int((int)minor));
	json_object_object_add(v, "micro", json_object_new_int((int)micro));
	req->ret = json_object_new_object();
	json_object_object_add(req->ret, "minivmm", v);
	json_object_object_add(req->ret, "package", json_object_new_string(MINIVMM_VERSION));
	return 0;
}

static int cmd_query_commands(struct qmp_request *req)
{
	req->ret = json_object_new_array();
	for (const struct qmp_command *c = control_commands; c->name; c++) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "name", json_object_new_string(c->name));
		json_object_array_add(req->ret, o);
	}
	return 0;
}

static const char *const caps_args[] = { "enable", NULL };
static const char *const cont_args[] = { "force", NULL };
static const char *const digest_args[] = { "chunks", NULL };
static const char *const migrate_args[] = { "uri", "checkpoint", "keep-source-paused", "resume",
					     NULL };
static const char *const recover_args[] = { "uri", NULL };
static const char *const migrate_param_args[] = { "downtime-limit", "max-bandwidth",
						    "stall-timeout", "postcopy-start", "tls-creds", NULL };
static const char *const migrate_caps_args[] = { "capabilities", NULL };

/* One entry per command; its handler reads arguments with qmp_arg_*(). */
const struct qmp_command control_commands[] = {
	{ "qmp_capabilities", cmd_qmp_capabilities, caps_args },
	{ "query-status",     cmd_query_status,     NULL },
	{ "query-version",    cmd_query_version,    NULL },
	{ "query-vm-generation-id", cmd_query_vm_generation_id, NULL },
	{ "query-commands",   cmd_query_commands,   NULL },
	{ "stop",             cmd_stop,             NULL },
	{ "cont",             cmd_cont,             cont_args },
	{ "quit",             cmd_quit,             NULL },
	{ "migrate",          cmd_migrate,          migrate_args },
	{ "query-migrate",    cmd_query_migrate,    NULL },
	{ "migrate_cancel",   cmd_migrate_cancel,   NULL },
	{ "migrate-set-parameters", cmd_migrate_set_parameters, migrate_param_args },
	{ "query-migrate-parameters", cmd_query_migrate_parameters, NULL },
	{ "migrate-set-capabilities", cmd_migrate_set_capabilities, migrate_caps_args },
	{ "query-migrate-capabilities", cmd_query_migrate_capabilities, NULL },
	{ "migrate-start-postcopy", cmd_migrate_start_postcopy, NULL },
	{ "migrate-recover", cmd_migrate_recover, recover_args },
	{ "query-ram-digest", cmd_query_ram_digest, digest_args },
	{ NULL, NULL, NULL },
};
