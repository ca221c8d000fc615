// SPDX-License-Identifier: MIT
/*
 * Lifecycle of an outgoing migration. The main thread starts it and, when
 * the thread writes done_efd, joins it and acts on the outcome (stop the VM
 * after a completed move). The thread owns the VM's pause while it runs.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "migration/handover.h"
#include "migration/migration.h"
#include "migration/postcopy_src.h"
#include "migration/precopy.h"
#include "migration/snapshot.h"
#include "migration/uri.h"
#include "vmm/log.h"
#include "vmm/vm.h"
#include "vmm/lockdown.h"

#define DEFAULT_DOWNTIME_MS 300
#define DEFAULT_STALL_MS    10000

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

const char *migration_status_name(int status)
{
	static const char *const names[] = {
		[MIG_NONE] = "none", [MIG_SETUP] = "setup", [MIG_ACTIVE] = "active",
		[MIG_DEVICE] = "device", [MIG_COMPLETED] = "completed", [MIG_FAILED] = "failed",
		[MIG_CANCELLING] = "cancelling", [MIG_CANCELLED] = "cancelled",
		[MIG_POSTCOPY_ACTIVE] = "postcopy-active", [MIG_POSTCOPY_PAUSED] = "postcopy-paused",
		[MIG_POSTCOPY_RECOVER] = "postcopy-recover",
	};

	return status >= MIG_NONE && status <= MIG_POSTCOPY_RECOVER ? names[status] : "unknown";
}

bool migration_cancelled(const struct migration *m)
{
	return atomic_load(&m->cancel);
}

static bool postcopy_status(int s)
{
	return s == MIG_POSTCOPY_ACTIVE || s == MIG_POSTCOPY_PAUSED || s == MIG_POSTCOPY_RECOVER;
}

void migration_set_status(struct migration *m, int status)
{
	atomic_store(&m->status, status);
	/* Clients hear of the switch and of a break as MIGRATION events. */
	if (postcopy_status(status) && m->status_efd >= 0)
		eventfd_write(m->status_efd, 1);
}

/* Main thread: a MIGRATION event for the postcopy status now. */
static void migration_on_status(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	struct migration *m = vm->mig;
	int status = atomic_load(&m->status);
	eventfd_t v;

	(void)events;
	eventfd_read(m->status_efd, &v);
	if (postcopy_status(status) && m->event_cb)
		m->event_cb(vm, status);
}

/* The capture of errors (log.c) keeps the first: this one is written first. */
static void set_error(struct migration *m, const char *fmt, va_list ap)
{
	vsnprintf(m->error, sizeof(m->error), fmt, ap);
	pr_err("migration: %s", m->error);
}

void migration_error(struct migration *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_error(m, fmt, ap);
	va_end(ap);
}

void migration_strand(struct migration *m, const char *fmt, ...)
{
	va_list ap;

	m->stranded = true;
	va_start(ap, fmt);
	set_error(m, fmt, ap);
	va_end(ap);
}

/* Main thread: a take-back that failed leaves the VM stranded. */
static void strand_main(struct migration *m)
{
	char why[sizeof(m->error)];

	snprintf(why, sizeof(why), "%s", m->error);
	m->stranded = true;
	snprintf(m->error, sizeof(m->error), "%.300s; but the disks and taps could not be "
		 "taken back, so this VM stays paused (`cont {\"force\": true}` tries again)", why);
}

int migration_unstrand(struct vm *vm, char *err, size_t errlen)
{
	struct migration *m = vm->mig;

	if (!m->stranded)
		return 0;
	if (handover_take_back(vm) < 0) {
		snprintf(err, errlen, "cannot take the disks and taps back (see minivmm's stderr): "
			 "the VM stays paused");
		return -1;
	}
	m->stranded = false;
	pr_warn("migration: `cont` with force: the guest runs here again after an "
		"unconfirmed GO to %s", m->uri);
	return 0;
}

void migration_set_event_cb(struct vm *vm, migration_event_cb cb)
{
	vm->mig->event_cb = cb;
}

static void *migration_thread(void *arg)
{
	struct migration *m = arg;
	struct mig_uri uri;
	char err[256];
	int ret = -1;

	pthread_setname_np(pthread_self(), "migration");
	lockdown_thread(THREAD_MIGRATION);
	uri_parse(m->uri, &uri, err, sizeof(err));      /* checked in migration_start */
	log_capture_errors(m->error, sizeof(m->error));
	if (m->resume)
		ret = postcopy_resume(m, &uri);
	else if (uri.kind == URI_FILE)
		ret = snapshot_save(m, uri.path);
	else
		ret = precopy_migrate(m, &uri);
	log_capture_errors(NULL, 0);
	if (ret == 0)
		migration_set_status(m, MIG_COMPLETED);
	else if (!m->take_back && atomic_load(&m->status) != MIG_POSTCOPY_PAUSED)
		/* else once the guest runs again (main thread) */
		migration_set_status(m, migration_cancelled(m) ? MIG_CANCELLED : MIG_FAILED);
	pthread_mutex_lock(&m->stats_lock);
	m->stats.total_time_ms = (now_ns() - m->start_ns) / 1000000;
	pthread_mutex_unlock(&m->stats_lock);
	eventfd_write(m->done_efd, 1);
	return NULL;
}

static void migration_on_done(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	struct migration *m = vm->mig;
	eventfd_t v;
	int status;

	(void)events;
	eventfd_read(m->done_efd, &v);
	if (!m->thread_live)
		return;
	pthread_join(m->thread, NULL);
	m->thread_live = false;
	if (m->take_back) {
		m->take_back = false;
		if (handover_take_back(vm) < 0)
			strand_main(m);
		migration_set_status(m, MIG_FAILED);
	}
	status = atomic_load(&m->status);
	if (status == MIG_COMPLETED)
		pr_info("migration to %s completed in %llu ms", m->uri,
			(unsigned long long)m->stats.total_time_ms);
	else
		pr_info("migration to %s %s: %s", m->uri, migration_status_name(status), m->error);
	if (m->event_cb)
		m->event_cb(vm, status);
	/* A completed move: the guest lives elsewhere now (or, postcopy paused,
	 * runs there and waits for pages only this VM has). */
	if ((status == MIG_COMPLETED && m->after != MIG_AFTER_RUN) || status == MIG_POSTCOPY_PAUSED)
		vm->migrated_away = true;
	if (status == MIG_COMPLETED && m->after == MIG_AFTER_EXIT)
		vm_request_stop(vm, VM_STOP_MIGRATED);
	else if (status == MIG_COMPLETED && m->after == MIG_AFTER_PAUSE)
		pr_info("migration: this VM stays paused (--keep-source-paused); the guest runs "
			"at the destination, so it cannot resume here");
	else if (m->stranded || status == MIG_POSTCOPY_PAUSED)
		pr_err("migration: this VM stays paused: %s", m->error);
}

int migration_init(struct vm *vm)
{
	struct migration *m = calloc(1, sizeof(*m));

	if (!m)
		return -1;
	m->vm = vm;
	m->downtime_limit_ms = DEFAULT_DOWNTIME_MS;
	m->stall_timeout_ms = DEFAULT_STALL_MS;
	pthread_mutex_init(&m->stats_lock, NULL);
	m->sock_fd = -1;
	m->done_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	m->status_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->done_efd < 0 || m->status_efd < 0 ||
	    event_loop_add(&vm->loop, m->done_efd, EPOLLIN, migration_on_done, vm) < 0 ||
	    event_loop_add(&vm->loop, m->status_efd, EPOLLIN, migration_on_status, vm) < 0) {
		if (m->done_efd >= 0)
			close(m->done_efd);
		if (m->status_efd >= 0)
			close(m->status_efd);
		free(m);
		return -1;
	}
	vm->mig = m;
	return 0;
}

void migration_destroy(struct vm *vm)
{
	struct migration *m = vm->mig;

	if (!m)
		return;
	if (m->thread_live) {
		atomic_store(&m->cancel, true);
		pthread_join(m->thread, NULL);
	}
	close(m->done_efd);
	close(m->status_efd);
	pthread_mutex_destroy(&m->stats_lock);
	free(m);
	vm->mig = NULL;
}


/* The status is set: run the thread, or fall back to `failed` with err. */
static int start_thread(struct migration *m, int failed, char *err, size_t errlen)
{
	if (pthread_create(&m->thread, NULL, migration_thread, m)) {
		snprintf(err, errlen, "cannot start the migration thread");
		migration_set_status(m, failed);
		return -1;
	}
	m->thread_live = true;
	return 0;
}

int migration_start(struct vm *vm, const char *uri, enum mig_after after, char *err,
		    size_t errlen)
{
	struct migration *m = vm->mig;
	struct mig_uri u;

	if (m->thread_live) {
		snprintf(err, errlen, "a migration is already in progress (%s)",
			 migration_status_name(atomic_load(&m->status)));
		return -1;
	}
	if (strlen(uri) >= sizeof(m->uri) || uri_parse(uri, &u, err, errlen) < 0)
		return -1;
	if (atomic_load(&m->status) == MIG_POSTCOPY_PAUSED) {
		snprintf(err, errlen, "postcopy to %.200s is paused: the guest runs there; resume it "
			 "(migrate with \"resume\": true to the destination's migrate-recover address)",
			 m->uri);
		return -1;
	}
	if (vm->migrated_away) {
		snprintf(err, errlen, "the guest was migrated away: nothing to migrate");
		return -1;
	}
	if (m->stranded) {
		snprintf(err, errlen, "this VM is paused after an unconfirmed GO to %.200s: the "
			 "guest may run there (`cont {\"force\": true}` first, if it does not)",
			 m->uri);
		return -1;
	}
	if (after == MIG_AFTER_RUN && u.kind != URI_FILE) {
		snprintf(err, errlen, "checkpoint goes with file: (a live migration is a move)");
		return -1;
	}
	snprintf(m->uri, sizeof(m->uri), "%s", uri);
	m->after = after;
	m->error[0] = 0;
	m->has_digest = false;
	m->go_sent = false;
	m->take_back = false;
	m->pause_ns = 0;
	m->sock_fd = -1;
	m->postcopy = false;
	m->resume = false;
	m->pc_nr_early = 0;
	atomic_store(&m->postcopy_start, false);
	atomic_store(&m->cancel, false);
	memset(&m->stats, 0, sizeof(m->stats));
	m->stats.ram_total = vm->mem.ram_size;
	m->start_ns = now_ns();
	migration_set_status(m, MIG_SETUP);
	return start_thread(m, MIG_FAILED, err, errlen);
}

int migration_resume(struct vm *vm, const char *uri, char *err, size_t errlen)
{
	struct migration *m = vm->mig;
	struct mig_uri u;

	if (m->thread_live || atomic_load(&m->status) != MIG_POSTCOPY_PAUSED || !m->pc_bits) {
		snprintf(err, errlen, "resume: no paused postcopy here (status %s)",
			 migration_status_name(atomic_load(&m->status)));
		return -1;
	}
	if (strlen(uri) >= sizeof(m->uri) || uri_parse(uri, &u, err, errlen) < 0)
		return -1;
	if (u.kind == URI_FILE) {
		snprintf(err, errlen, "resume: a postcopy resumes over tcp: or unix:");
		return -1;
	}
	snprintf(m->uri, sizeof(m->uri), "%s", uri);
	m->error[0] = 0;
	m->sock_fd = -1;
	m->resume = true;
	atomic_store(&m->cancel, false);
	/* Not paused from here on: a client asking at once must not see it so. */
	migration_set_status(m, MIG_POSTCOPY_RECOVER);
	return start_thread(m, MIG_POSTCOPY_PAUSED, err, errlen);
}

int migration_start_postcopy(struct vm *vm, char *err, size_t errlen)
{
	struct migration *m = vm->mig;
	int s = atomic_load(&m->status);

	if (!m->postcopy_ram) {
		snprintf(err, errlen, "postcopy is not enabled: migrate-set-capabilities "
			 "postcopy-ram first, before migrate");
		return -1;
	}
	if (!m->thread_live || (s != MIG_SETUP && s != MIG_ACTIVE && !postcopy_status(s))) {
		snprintf(err, errlen, "no precopy migration is running (status %s)",
			 migration_status_name(s));
		return -1;
	}
	atomic_store(&m->postcopy_start, true);
	return 0;
}

int migration_cancel(struct vm *vm, char *err, size_t errlen)
{
	struct migration *m = vm->mig;
	int s = atomic_load(&m->status);

	if (postcopy_status(s) || (m->thread_live && m->postcopy && m->go_sent)) {
		snprintf(err, errlen, "the migration switched to postcopy: the guest runs at the "
			 "destination and part of its memory is only here, so it can neither come "
			 "back nor be dropped; it completes (or, with the link broken, waits for "
			 "migrate-recover)");
		return -1;
	}
	if (!m->thread_live || s == MIG_COMPLETED || s == MIG_FAILED)
		return 0;
	atomic_store(&m->cancel, true);
	migration_set_status(m, MIG_CANCELLING);
	/* A thread blocked on a silent peer would only notice at the stall
	 * timeout: cut the connection (never after GO: see precopy.c). */
	pthread_mutex_lock(&m->stats_lock);
	if (m->sock_fd >= 0)
		shutdown(m->sock_fd, SHUT_RDWR);
	pthread_mutex_unlock(&m->stats_lock);
	return 0;
}

void migration_set_socket(struct migration *m, int fd)
{
	pthread_mutex_lock(&m->stats_lock);
	m->sock_fd = fd;
	pthread_mutex_unlock(&m->stats_lock);
}

void migration_query(struct vm *vm, int *status, struct migration_stats *st, char *err,
		     size_t errlen)
{
	struct migration *m = vm->mig;

	*status = atomic_load(&m->status);
	pthread_mutex_lock(&m->stats_lock);
	*st = m->stats;
	if (m->thread_live)
		st->total_time_ms = (now_ns() - m->start_ns) / 1000000;
	pthread_mutex_unlock(&m->stats_lock);
	/* The thread writes error only until it finishes. */
	snprintf(err, errlen, "%s", m->thread_live ? "" : m->error);
}
