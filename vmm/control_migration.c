// SPDX-License-Identifier: MIT
/*
 * Control-socket commands for migration and snapshots, in QEMU's names and
 * units: migrate, query-migrate, migrate_cancel, migrate-set-parameters
 * (downtime-limit in ms, max-bandwidth in bytes/s), query-migrate-parameters,
 * and query-ram-digest (a digest of guest RAM while the VM is paused, per
 * region and per 2 MiB chunk, for tests that compare two VMs exactly).
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration/crc32c.h"
#include "migration/migration.h"
#include "migration/ram_file.h"
#include "vmm/control.h"
#include "vmm/control_migration.h"
#include "vmm/qmp.h"
#include "vmm/vm.h"

#define DIGEST_FMT "%08x"

static struct json_object *hex32(uint32_t v)
{
	char buf[16];

	snprintf(buf, sizeof(buf), DIGEST_FMT, v);
	return json_object_new_string(buf);
}

static void add_u64(struct json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_int64((int64_t)v));
}

int cmd_migrate(struct qmp_request *req)
{
	struct vm *vm = control_req_vm(req);
	const char *uri;
	bool checkpoint = false, keep_paused = false;
	char err[256];

	if (qmp_arg_string(req, "uri", true, &uri) < 0 ||
	    qmp_arg_bool(req, "checkpoint", false, &checkpoint) < 0 ||
	    qmp_arg_bool(req, "keep-source-paused", false, &keep_paused) < 0)
		return -1;
	if (checkpoint && keep_paused)
		return qmp_error(req, QMP_ERR_GENERIC,
				 "checkpoint (keep running) and keep-source-paused exclude each other");
	if (atomic_load(&vm->stop_reason))
		return qmp_error(req, QMP_ERR_GENERIC, "the VM is shutting down");
	if (migration_start(vm, uri, checkpoint ? MIG_AFTER_RUN : keep_paused ? MIG_AFTER_PAUSE :
			    MIG_AFTER_EXIT, err, sizeof(err)) < 0)
		return qmp_error(req, QMP_ERR_GENERIC, "%s", err);
	control_event(vm, "MIGRATION", migration_event_data(vm, MIG_SETUP));
	return 0;
}

static struct json_object *ram_stats_json(const struct migration_stats *st);

struct json_object *migration_event_data(struct vm *vm, int status)
{
	struct json_object *d = json_object_new_object();

	json_object_object_add(d, "status", json_object_new_string(migration_status_name(status)));
	if (status == MIG_COMPLETED && vm->mig->has_digest)
		json_object_object_add(d, "ram-digest", hex32(vm->mig->ram_digest));
	if (status == MIG_COMPLETED) {
		/* The source may exit right after: the figures go with the event. */
		add_u64(d, "total-time", vm->mig->stats.total_time_ms);
		add_u64(d, "setup-time", vm->mig->stats.setup_time_ms);
		add_u64(d, "downtime", vm->mig->stats.downtime_ms);
		add_u64(d, "transferred", vm->mig->stats.transferred);
		add_u64(d, "cpu-throttle-percentage", vm->mig->stats.throttle_pct);
		json_object_object_add(d, "ram", ram_stats_json(&vm->mig->stats));
	}
	return d;
}

static struct json_object *ram_stats_json(const struct migration_stats *st)
{
	struct json_object *ram = json_object_new_object();

	add_u64(ram, "transferred", st->transferred);
	add_u64(ram, "total", st->ram_total);
	add_u64(ram, "remaining", st->ram_remaining);
	add_u64(ram, "normal", st->pages_normal);
	add_u64(ram, "duplicate", st->pages_zero);      /* QEMU's name for zero pages */
	add_u64(ram, "dirty-pages-rate", st->dirty_rate_pps);
	add_u64(ram, "dirty-sync-count", st->rounds);
	add_u64(ram, "pages-resent", st->pages_dirty_resent);
	add_u64(ram, "mbps", st->throughput_bps * 8 / 1000000);
	add_u64(ram, "page-size", 4096);
	return ram;
}

int cmd_query_migrate(struct qmp_request *req)
{
	struct vm *vm = control_req_vm(req);
	struct migration_stats st;
	char err[512];
	int status;

	migration_query(vm, &status, &st, err, sizeof(err));
	req->ret = json_object_new_object();
	if (status == MIG_NONE)
		return 0;       /* as QEMU: {} before any migration */
	json_object_object_add(req->ret, "status", json_object_new_string(migration_status_name(status)));
	add_u64(req->ret, "total-time", st.total_time_ms);
	add_u64(req->ret, "setup-time", st.setup_time_ms);
	add_u64(req->ret, "expected-downtime", st.expected_downtime_ms);
	if (status == MIG_COMPLETED)
		add_u64(req->ret, "downtime", st.downtime_ms);
	json_object_object_add(req->ret, "ram", ram_stats_json(&st));
	add_u64(req->ret, "cpu-throttle-percentage", st.throttle_pct);
	if (*err)
		json_object_object_add(req->ret, "error-desc", json_object_new_string(err));
	if (status == MIG_COMPLETED && vm->mig->has_digest)
		json_object_object_add(req->ret, "ram-digest", hex32(vm->mig->ram_digest));
	return 0;
}

int cmd_migrate_cancel(struct qmp_request *req)
{
	migration_cancel(control_req_vm(req));
	return 0;
}

int cmd_migrate_set_parameters(struct qmp_request *req)
{
	struct migration *m = control_req_vm(req)->mig;
	int64_t downtime = -1, bw = -1, stall = -1;

	if (qmp_arg_int(req, "downtime-limit", false, &downtime) < 0 ||
	    qmp_arg_int(req, "max-bandwidth", false, &bw) < 0 ||
	    qmp_arg_int(req, "stall-timeout", false, &stall) < 0)
		return -1;
	if ((downtime != -1 && (downtime < 1 || downtime > 2000000)) || bw < -1 ||
	    (stall != -1 && (stall < 100 || stall > 3600000)))
		return qmp_error(req, QMP_ERR_GENERIC,
				 "downtime-limit must be 1..2000000 ms, max-bandwidth >= 0 bytes/s, "
				 "stall-timeout 100..3600000 ms");
	if (downtime != -1)
		m->downtime_limit_ms = (uint64_t)downtime;
	if (bw != -1)
		m->max_bandwidth = (uint64_t)bw;
	if (stall != -1)
		m->stall_timeout_ms = (uint64_t)stall;
	return 0;
}

int cmd_query_migrate_parameters(struct qmp_request *req)
{
	struct migration *m = control_req_vm(req)->mig;

	req->ret = json_object_new_object();
	add_u64(req->ret, "downtime-limit", m->downtime_limit_ms);
	add_u64(req->ret, "max-bandwidth", m->max_bandwidth);
	add_u64(req->ret, "stall-timeout", m->stall_timeout_ms);
	return 0;
}

int cmd_query_ram_digest(struct qmp_request *req)
{
	struct vm *vm = control_req_vm(req);
	uint64_t n = ram_nr_chunks(&vm->mem);
	uint32_t *crcs;
	struct ram_stats rs;
	struct json_object *chunks, *regions;

	if (!vm_is_paused(vm))
		return qmp_error(req, QMP_ERR_GENERIC, "query-ram-digest needs a paused VM (stop first)");
	crcs = calloc(n, sizeof(*crcs));
	if (!crcs || ram_compute_crcs(&vm->mem, crcs, &rs) < 0) {
		free(crcs);
		return qmp_error(req, QMP_ERR_GENERIC, "cannot read guest RAM");
	}
	chunks = json_object_new_array();
	for (uint64_t i = 0; i < n; i++)
		json_object_array_add(chunks, hex32(crcs[i]));
	regions = json_object_new_array();
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		const struct mem_region *r = &vm->mem.regions[i];
		uint64_t first = ram_region_offset(&vm->mem, i) / RAM_CHUNK;
		uint64_t cnt = (r->size + RAM_CHUNK - 1) / RAM_CHUNK;
		struct json_object *o = json_object_new_object();

		add_u64(o, "gpa", r->gpa);
		add_u64(o, "size", r->size);
		json_object_object_add(o, "digest", hex32(crc32c(0, crcs + first, cnt * 4)));
		json_object_array_add(regions, o);
	}
	req->ret = json_object_new_object();
	json_object_object_add(req->ret, "digest", hex32(crc32c(0, crcs, n * 4)));
	json_object_object_add(req->ret, "regions", regions);
	json_object_object_add(req->ret, "chunks", chunks);
	add_u64(req->ret, "pages-present", rs.pages_present);
	free(crcs);
	return 0;
}

void control_migration_event(struct vm *vm, int status)
{
	control_event(vm, "MIGRATION", migration_event_data(vm, status));
}
