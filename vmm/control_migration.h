/* SPDX-License-Identifier: MIT */
/* Migration commands of the control socket (docs/control-api.md). */
#ifndef VMM_CONTROL_MIGRATION_H
#define VMM_CONTROL_MIGRATION_H

struct qmp_request;
struct json_object;
struct vm;

int cmd_migrate(struct qmp_request *req);
int cmd_query_migrate(struct qmp_request *req);
int cmd_migrate_cancel(struct qmp_request *req);
int cmd_migrate_set_parameters(struct qmp_request *req);
int cmd_query_migrate_parameters(struct qmp_request *req);
int cmd_migrate_set_capabilities(struct qmp_request *req);
int cmd_query_migrate_capabilities(struct qmp_request *req);
int cmd_migrate_start_postcopy(struct qmp_request *req);
int cmd_migrate_recover(struct qmp_request *req);
int cmd_query_ram_digest(struct qmp_request *req);
/* Data of a MIGRATION event: status, and the RAM digest once completed. */
struct json_object *migration_event_data(struct vm *vm, int status);
/* migration_event_cb: the MIGRATION event when a migration ends. */
void control_migration_event(struct vm *vm, int status);

#endif
