/* SPDX-License-Identifier: MIT */
/*
 * Outgoing migration (and snapshots, which are migrations to a file): one
 * at a time, run by a migration thread, controlled from the main thread
 * (control socket). Status names and statistics follow QEMU's
 * query-migrate where the meaning is the same.
 *
 * Nothing lost: until the destination has everything (a file is complete,
 * synced and renamed into place), any failure or cancel resumes the VM as
 * it was. After success, a "move" stops the VM (the process exits 0); a
 * checkpoint resumes it; --keep-source-paused keeps it paused for good.
 */
#ifndef MIGRATION_MIGRATION_H
#define MIGRATION_MIGRATION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;
struct postcopy_dst;

/* Called on the main thread when a migration ends (the control socket's
 * MIGRATION event). */
typedef void (*migration_event_cb)(struct vm *vm, int status);

enum migration_status {
	MIG_NONE,
	MIG_SETUP,
	MIG_ACTIVE,
	MIG_DEVICE,             /* VM paused, final RAM and state going out */
	MIG_COMPLETED,
	MIG_FAILED,
	MIG_CANCELLING,
	MIG_CANCELLED,
	MIG_POSTCOPY_ACTIVE,    /* the guest runs at the destination; pages still flow */
	MIG_POSTCOPY_PAUSED,    /* ... and the link broke: both sides wait for a recovery */
	MIG_POSTCOPY_RECOVER,   /* a new link is being set up */
};

/* Postcopy's figures (both sides: the destination measures faults and
 * tells the source in its COMPLETE reply). */
struct postcopy_stats {
	uint64_t requests;              /* page requests from the destination */
	uint64_t pages_requested;       /* pages sent because they were asked for */
	uint64_t pages_pushed;          /* pages sent by the background push */
	uint64_t pages_needed;          /* pages the destination lacked at the switch */
	uint64_t blocktime_ms;          /* sum of the waits of faults on missing pages */
	uint64_t fault_p50_us;          /* fault to page in place */
	uint64_t fault_p99_us;
	uint64_t faults;                /* faults on pages still at the source */
	uint64_t time_ms;               /* from GO to the last page in place */
	uint64_t switch_ms;             /* precopy time before the switch */
	char why[160];                  /* what made the switch */
};

struct migration_stats {
	uint64_t total_time_ms;
	uint64_t setup_time_ms;
	uint64_t downtime_ms;
	uint64_t flush_time_ms;         /* of the downtime: the disks' fdatasync */
	uint64_t expected_downtime_ms;
	uint64_t transferred;           /* bytes */
	uint64_t ram_total;             /* bytes of guest RAM */
	uint64_t ram_remaining;
	uint64_t pages_normal;
	uint64_t pages_zero;
	uint64_t pages_dirty_resent;
	uint64_t rounds;
	uint64_t dirty_rate_pps;        /* pages per second */
	uint64_t throughput_bps;        /* bytes per second */
	uint32_t throttle_pct;
	struct postcopy_stats postcopy;
};

/* When a migration with postcopy-ram switches (parameter postcopy-start). */
enum {
	MIG_POSTCOPY_WHEN_MANUAL,       /* "manual": on migrate-start-postcopy, at once */
	MIG_POSTCOPY_WHEN_FIRST_PASS,   /* "after-first-pass" */
	MIG_POSTCOPY_WHEN_AUTO,         /* "auto": when precopy would need throttling */
};

/* After a successful migration or snapshot, the VM...*/
enum mig_after {
	MIG_AFTER_EXIT,         /* stops; minivmm exits 0 (a move: the default) */
	MIG_AFTER_RUN,          /* runs on (a checkpoint; file: only) */
	MIG_AFTER_PAUSE,        /* stays paused for inspection and never runs again */
};

struct migration {
	struct vm *vm;
	pthread_t thread;
	bool thread_live;               /* joined by the main thread */
	_Atomic int status;
	_Atomic bool cancel;
	enum mig_after after;           /* what the VM does after success */
	char uri[4096];
	char error[512];
	int done_efd;                   /* the thread's "I am finished" to the main loop */
	int status_efd;                 /* ... and "postcopy status changed" (an event) */
	migration_event_cb event_cb;
	bool has_digest;                /* ram_digest: of the RAM saved at the pause */
	uint32_t ram_digest;
	uint64_t start_ns;
	pthread_mutex_t stats_lock;
	struct migration_stats stats;
	/* Settable with migrate-set-parameters. */
	uint64_t downtime_limit_ms;
	uint64_t max_bandwidth;         /* bytes/s, 0 = unlimited */
	uint64_t stall_timeout_ms;      /* a peer silent this long has failed */
	char tls_creds[4096];           /* tls-creds: a folder (migration/tls.h), "" = none */
	/* migrate-set-capabilities postcopy-ram, and when to switch. */
	bool postcopy_ram;
	int postcopy_when;              /* MIG_POSTCOPY_WHEN_*: migrate-set-parameters postcopy-start */
	_Atomic bool postcopy_start;    /* migrate-start-postcopy: switch at the next round */
	bool postcopy;                  /* this migration switched */
	/* Page requests that came before RUNNING (handover.c), for postcopy_serve. */
#define MIG_EARLY_REQUESTS 64
	uint64_t pc_early[MIG_EARLY_REQUESTS];
	unsigned pc_nr_early;
	/* Postcopy paused: the pages the destination lacks (one bitmap per
	 * region) and the session a resume names; kept for `migrate` with
	 * resume. */
	uint64_t **pc_bits;
	uint64_t pc_session;
	uint64_t pc_t0;                 /* RUNNING after the switch */
	bool resume;                    /* this run of the thread resumes postcopy */
	/* Destination: the postcopy in progress, for migrate-recover. */
	struct postcopy_dst *pc_dst;
	/* Live migration progress (precopy.c, handover.c). */
	bool go_sent;                   /* GO went out */
	/* GO went out and no answer came: the guest may run at the destination,
	 * so this VM stays frozen until `cont {"force": true}` (main thread). */
	_Atomic bool stranded;
	/* The destination will not run the guest after all (handover.c): the
	 * main thread takes the backends back and thaws when it joins. */
	bool take_back;
	uint64_t pause_ns;
	/* The connection, for migrate_cancel to cut a thread blocked on a
	 * stalled peer; -1 when none or once GO is sent. Under stats_lock. */
	int sock_fd;
};

int migration_init(struct vm *vm);
void migration_destroy(struct vm *vm);

/* Main thread. 0 when started; -1 with `err` filled (bad URI, busy). */
int migration_start(struct vm *vm, const char *uri, enum mig_after after, char *err,
		    size_t errlen);
/* Main thread: continue a paused postcopy over a new connection to the
 * destination's migrate-recover address. 0, or -1 with `err` filled. */
int migration_resume(struct vm *vm, const char *uri, char *err, size_t errlen);
/* 0, or -1 with `err` filled: cancelling after a postcopy switch is refused
 * (the guest's newest memory is at the destination, its oldest here). */
int migration_cancel(struct vm *vm, char *err, size_t errlen);
/* migrate-start-postcopy: 0, or -1 with `err` filled. */
int migration_start_postcopy(struct vm *vm, char *err, size_t errlen);
const char *migration_status_name(int status);
/* Snapshot of status, stats and error for query-migrate. */
void migration_query(struct vm *vm, int *status, struct migration_stats *st, char *err,
		     size_t errlen);

void migration_set_event_cb(struct vm *vm, migration_event_cb cb);

/* Migration thread: the connection cancel may shut down (-1: none any more). */
void migration_set_socket(struct migration *m, int fd);

/* Migration thread: the error this migration ends with (replacing any
 * earlier one), said on stderr too. */
void migration_error(struct migration *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Migration thread, after GO: the VM stays frozen, stranded, for the
 * reason given (also the migration's error). */
void migration_strand(struct migration *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Main thread: a stranded VM takes its backends back and runs again (the
 * operator's `cont {"force": true}`). -1 with `err` filled if it cannot. */
int migration_unstrand(struct vm *vm, char *err, size_t errlen);

/* For the migration thread's helpers. */
bool migration_cancelled(const struct migration *m);
void migration_set_status(struct migration *m, int status);
uint64_t now_ns(void);

#endif
