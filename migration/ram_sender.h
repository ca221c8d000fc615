/* SPDX-License-Identifier: MIT */
/*
 * The sending half of a live migration's RAM (precopy.c, postcopy_src.c):
 * pages are staged (copied, checksummed while in L1) into REC_RAM batches
 * on the stream; zero pages go as numbers only. Dirty pages are harvested
 * into one bitmap per region (page_bits_alloc). Touches guest RAM (read
 * only), the dirty tracker, the stream and the migration's statistics.
 */
#ifndef MIGRATION_RAM_SENDER_H
#define MIGRATION_RAM_SENDER_H

#include <stdint.h>

#include "migration/migration.h"
#include "migration/stream.h"

struct vm;
struct mig_uri;

struct sender {
	struct migration *m;
	struct vm *vm;
	struct chan c;
	struct chan ret;        /* the return path: same socket, its own counts */
	struct ram_batch_hdr hdr;
	uint64_t entries[RAM_BATCH_SEND_PAGES];
	/* Pages are copied here before they go out: the guest keeps writing
	 * while we send, and the record's CRC must cover the bytes sent. A
	 * page changed after its copy is dirty again and goes in a later pass.
	 * Each copy is checksummed while it is still in L1. */
	uint8_t *stage;
	unsigned staged;
	uint32_t stage_crc;
	uint64_t pages_data, pages_zero;        /* totals for the end record */
	uint64_t round_bytes;
	uint64_t pass_t0;                       /* this pass began (throughput) */
	uint64_t scan_left;                     /* first pass: RAM not scanned yet */
	uint64_t rate_t0, rate_bytes;           /* for max-bandwidth */
	uint32_t phase;                         /* RAM_PHASE_*: record flags */
	bool unpaced;                           /* the caller keeps max-bandwidth itself */
	bool quiet;                             /* a second stream: no statistics of its own */
	int urgent_fd;                          /* postcopy's second connection, or -1 */
	struct tls_creds *tls_creds;            /* tls-creds, loaded at the first connect */
	struct tls_link *tls, *urgent_tls;      /* the two connections' sessions, or NULL */
	const struct mig_uri *uri;              /* connected to (the caller's, for the migration) */
	bool urgent_hello_due;                  /* TLS: the second connection's handshake waits */
	/* First pass: where it stopped when migrate-start-postcopy came. */
	bool scan_stopped;
	unsigned scan_region;
	uint64_t scan_off;
};

/* 0, or -1 when out of memory. */
int sender_init(struct sender *s, struct migration *m);
void sender_free(struct sender *s);
/* Connect to the destination, both directions bounded by the stall
 * timeout; c and ret share the socket (and with tls-creds its TLS session,
 * whose handshake is done here). 0, or -1 (printed). */
int sender_connect(struct sender *s, const struct mig_uri *u);
/* With postcopy-ram: a second connection for requested pages, before the
 * stream's header (which then says so). Its hello goes out here. Failing
 * is no error: requested pages then share the first connection. */
void sender_connect_urgent(struct sender *s, const struct mig_uri *u);
/* After the header (which announced the second connection): with TLS its
 * handshake and hello happen only now, since the destination accepts it
 * only once it has read that header. 0, or -1 (printed): then the whole
 * migration fails, as the destination waits for a connection that failed. */
int sender_urgent_hello(struct sender *s);
/* Queue page `gpa` (host copy at `p`); a full batch goes out. 0 or -1. */
int sender_page(struct sender *s, uint64_t gpa, const uint8_t *p);
/* Send the batch queued so far. 0, or -1 (I/O error, cancelled). */
int sender_flush(struct sender *s);
/* First pass: every page that was ever written (SEEK_DATA on the memfd).
 * Stops early (scan_stopped, scan_region/scan_off) once migrate-start-postcopy
 * asks for the switch. */
int sender_all(struct sender *s);
/* Every page set in `bits` (one bitmap per region); clears them. */
int sender_dirty(struct sender *s, uint64_t **bits);
/* Harvest and move everything dirtied into `bits`; returns how many pages
 * `bits` now holds (it may still hold some from an unsent collect). */
int64_t sender_collect(struct sender *s, uint64_t **bits);
/* The destination's next reply must be `want`; else printed, -1. */
int sender_read_reply(struct sender *s, uint32_t want, const char *phase);

/* One bitmap per region of the VM's RAM, a bit per page. */
uint64_t **page_bits_alloc(struct vm *vm);
void page_bits_free(uint64_t **b);

#endif
