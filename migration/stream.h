/* SPDX-License-Identifier: MIT */
/*
 * The migration stream's record codec (docs/migration-format.md): every
 * record is a 16-byte header {u32 type, u32 flags, u64 length}, `length`
 * bytes of payload, and a CRC32C of header and payload, all little-endian.
 * A reader checks the type, bounds the length by type before allocating
 * anything, and verifies the CRC before handing the payload out.
 *
 * The I/O goes through a `struct chan`: a file descriptor plus an offset
 * (files are written with pwrite at known places; sockets sequentially).
 */
#ifndef MIGRATION_STREAM_H
#define MIGRATION_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define STREAM_MAGIC        "MINIVMM\n"
#define STREAM_MAJOR        1
#define STREAM_MINOR        3   /* 1.1: sync records; 1.2: postcopy; 1.3: generation ID, save time */

enum record_type {
	REC_HEADER = 1,         /* struct stream_header */
	REC_MACHINE = 2,        /* FDT: what the destination must build */
	REC_RAM = 3,            /* a batch of pages (TCP stream) */
	REC_RAM_INDEX = 4,      /* file: chunk size and one CRC per chunk */
	REC_STATE = 5,          /* FDT: vCPU, VM and device state */
	REC_END = 6,            /* struct stream_end: totals to check */
	REC_GO = 7,             /* source -> destination: run the guest now (empty) */
	REC_REPLY = 8,          /* destination -> source (return path): struct stream_reply + text */
	REC_SYNC = 9,           /* source -> destination: answer SYNCED once all before is in RAM (empty) */
	REC_POSTCOPY = 10,      /* source -> destination: switch to postcopy; struct postcopy_switch + bitmap */
	REC_PAGE_REQ = 11,      /* destination -> source (postcopy): u64 guest addresses it waits for */
	REC_RESUME = 12,        /* source -> destination, a recovery's first record after the header */
	REC_WORKING_SET = 13,   /* file: the pages the guest was writing as it was saved (struct page_set) */
	REC_TYPE_MAX = REC_WORKING_SET,
};

/* REC_RAM payload: a header, `count` u64 entries (page address | RAM_ENTRY_ZERO),
 * then 4096 bytes for every entry without RAM_ENTRY_ZERO, in entry order. */
struct ram_batch_hdr {
	uint32_t count;
	uint32_t flags;         /* 0 */
} __attribute__((packed));

#define RAM_ENTRY_ZERO      1ULL        /* the page is all zeroes: no data follows */
/* REC_RAM record flags: which pass of precopy the batch belongs to
 * (informational; failpoints and statistics key on it). */
#define RAM_PHASE_BULK      0
#define RAM_PHASE_ROUND     1
#define RAM_PHASE_FINAL     2
#define RAM_PHASE_POSTCOPY  3       /* after the switch: the background push */
#define RAM_PHASE_URGENT    4       /* after the switch: pages the destination asked for */
#define RAM_BATCH_MAX_PAGES 4096        /* 16 MiB of data per record at most */
/* What minivmm sends: 1 MiB of data stays in L2 from the copy through the
 * checksum to the socket, and on the destination from recv to guest RAM. */
#define RAM_BATCH_SEND_PAGES 256
#define RAM_BATCH_BYTES(pages) (sizeof(struct ram_batch_hdr) + (pages) * (8ULL + 4096))
_Static_assert(RAM_BATCH_SEND_PAGES <= RAM_BATCH_MAX_PAGES, "a batch the format allows");

/* REC_REPLY payload: a code, then an optional NUL-terminated message. */
enum reply_code {
	REPLY_READY = 1,        /* everything arrived and checked out; waiting for GO */
	REPLY_ERROR = 2,        /* the destination gives up: message says why */
	REPLY_RUNNING = 3,      /* after GO: backends open, guest running */
	REPLY_SYNCED = 4,       /* after SYNC: every RAM record before it is applied */
	REPLY_COMPLETE = 5,     /* postcopy: every page is in place; message: the fault figures */
	REPLY_RECEIVING = 6,    /* with FLAG_URGENT_CHANNEL: the VM exists, RAM may come */
};

/* REC_POSTCOPY payload: the pages the destination must drop and fetch again
 * (dirtied at the source after they were sent, or never sent), one bit per
 * page of guest RAM in region order, then nothing more. */
struct postcopy_switch {
	uint64_t pages;         /* bits in the bitmap: all of guest RAM */
	uint64_t needed;        /* bits set */
	uint64_t session;       /* random: a recovery names it (REC_RESUME) */
} __attribute__((packed));

/* REC_RESUME payload. The destination answers with a REC_POSTCOPY record of
 * the pages it still lacks (session: the same), or an ERROR reply. */
struct postcopy_resume {
	uint64_t session;
} __attribute__((packed));

#define PAGE_REQ_MAX 512        /* addresses in one REC_PAGE_REQ */

/* REC_WORKING_SET payload: a bitmap of guest RAM as in struct postcopy_switch. */
struct page_set {
	uint64_t pages;         /* bits: all of guest RAM in 4 KiB pages, regions in order */
	uint64_t count;         /* bits set */
} __attribute__((packed));

struct stream_reply {
	uint32_t code;
	uint32_t len;           /* bytes of message that follow (NUL included) */
} __attribute__((packed));

#define FLAG_FILE_LAYOUT    1U  /* header: RAM lives at fixed offsets in this file */
#define FLAG_URGENT_CHANNEL 2U  /* live: a second connection will carry requested pages */
#define FLAG_URGENT_HELLO   4U  /* live: this is that second connection */

struct stream_header {
	char magic[8];
	uint16_t major;
	uint16_t minor;
	uint32_t flags;
	uint64_t ram_offset;    /* file layout: where the RAM area starts */
	uint64_t ram_length;
	uint64_t meta_offset;   /* file layout: where the records after RAM start */
	uint64_t meta_length;
} __attribute__((packed));

struct stream_end {
	uint64_t records;       /* records before this one, header included */
	uint64_t pages_present; /* non-zero pages carried */
	uint64_t pages_zero;
	uint64_t ram_size;
} __attribute__((packed));

struct record_hdr {
	uint32_t type;
	uint32_t flags;
	uint64_t length;
} __attribute__((packed));

struct chan {
	int fd;
	bool seekable;          /* use pread/pwrite at `off` */
	uint64_t off;
	uint64_t bytes;         /* moved so far */
	uint64_t records;       /* records read or written */
	const char *name;       /* for messages: "file /snap", "tcp 127.0.0.1:4444" */
	/* Optional: RAM batches that fit are read here instead of a fresh malloc
	 * (a stream of large RAM records would otherwise fault in a new 16 MiB
	 * buffer for every record). Owned by the caller. */
	void *rxbuf;
	size_t rxcap;
	bool eof_quiet;         /* the peer closing is no error here: the caller says what it means */
	struct tls_link *tls;   /* TLS over fd (migration/tls.h), or NULL; not owned */
	bool io_failed;         /* the last read failed in transport, not in a check */
};

/* Data a poll() on c->fd would not see (TLS buffers decrypted records). */
bool chan_pending(const struct chan *c);

struct record {
	uint32_t type;
	uint32_t flags;
	uint64_t length;
	void *payload;          /* malloc'd (or the chan's rxbuf), length bytes; NULL when 0 */
	bool borrowed;          /* payload is the chan's rxbuf: valid until the next read */
};

void chan_init(struct chan *c, int fd, bool seekable, uint64_t off, const char *name);
int chan_write(struct chan *c, const void *buf, size_t len);
int chan_writev(struct chan *c, struct iovec *iov, int n);
/* 0, or -1 with a message (truncated stream, I/O error). */
int chan_read(struct chan *c, void *buf, size_t len);

/* Largest payload a record of `type` may have. */
uint64_t record_max_length(uint32_t type);
const char *record_type_name(uint32_t type);

int record_write(struct chan *c, uint32_t type, uint32_t flags, const void *payload,
		 size_t len);
/* Scatter form for large payloads (RAM batches): payload = iov[0..n). */
int record_writev(struct chan *c, uint32_t type, uint32_t flags, const struct iovec *iov,
		  int n);
/* The same, with the last iovec's crc32c(0, ...) given by the caller, who
 * checksummed it while producing it (RAM batches, page by page). */
int record_writev_crc(struct chan *c, uint32_t type, uint32_t flags, const struct iovec *iov,
		      int n, uint32_t last_crc);
/* Read the next record; `want` (0 for any) must match its type. */
int record_read(struct chan *c, struct record *rec, uint32_t want);
void record_free(struct record *rec);
/* A REC_REPLY record's text (the peer's bytes after struct stream_reply),
 * escaped for our messages into buf (len bytes); "" if it has none. */
const char *stream_reply_text(const struct record *rec, char *buf, size_t len);

/* Header helpers: fill / validate (message names both versions). */
void stream_header_init(struct stream_header *h, uint32_t flags);
int stream_header_check(const struct record *rec, struct stream_header *out);

#endif
