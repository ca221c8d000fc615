// SPDX-License-Identifier: MIT
/*
 * Pages out of guest RAM into REC_RAM batches (ram_sender.h). The guest
 * may write a page while it is being sent: the copy in the stage is what
 * the record's CRC covers, and a page changed after its copy is dirty
 * again and goes in a later pass.
 */
#include <errno.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "migration/crc32c.h"
#include "migration/handover.h"
#include "migration/tls.h"
#include "migration/ram_sender.h"
#include "migration/uri.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define PAGE GUEST_PAGE_SIZE
#define CONNECT_MS 5000

int sender_init(struct sender *s, struct migration *m)
{
	memset(s, 0, sizeof(*s));
	s->m = m;
	s->vm = m->vm;
	s->c.fd = -1;
	s->urgent_fd = -1;
	s->stage = malloc(RAM_BATCH_SEND_PAGES * PAGE);
	return s->stage ? 0 : -1;
}

/* With tls-creds: the handshake on a fresh connection; NULL on failure
 * (printed), or without tls-creds (then *ok stays true). */
static struct tls_link *sender_tls(struct sender *s, const struct mig_uri *u, int fd, bool *ok)
{
	struct tls_link *t;
	char why[512];

	*ok = true;
	if (!s->m->tls_creds[0] || u->kind == URI_FILE)
		return NULL;
	if (!s->tls_creds)
		s->tls_creds = tls_creds_load(s->m->tls_creds, TLS_SOURCE);
	*ok = false;
	if (!s->tls_creds)
		return NULL;
	t = tls_handshake(fd, s->tls_creds, u->kind == URI_TCP && u->host[0] ? u->host :
			  "localhost", why, sizeof(why));
	if (!t) {
		pr_err("%s: %s", s->m->uri, why);
		return NULL;
	}
	pr_info("%s: TLS (%s, %s)", s->m->uri, tls_creds_kind(s->tls_creds),
		tls_describe(t, why, sizeof(why)));
	*ok = true;
	return t;
}

int sender_connect(struct sender *s, const struct mig_uri *u)
{
	struct timeval tv = { .tv_sec = (time_t)(s->m->stall_timeout_ms / 1000),
			      .tv_usec = (suseconds_t)(s->m->stall_timeout_ms % 1000) * 1000 };
	int fd = uri_connect(u, CONNECT_MS);
	bool ok;

	if (fd < 0)
		return -1;
	/* A peer that stops reading or answering ends the migration, not the source. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	tls_free(s->tls);
	s->tls = sender_tls(s, u, fd, &ok);
	if (!ok) {
		close(fd);
		return -1;
	}
	chan_init(&s->c, fd, false, 0, s->m->uri);
	chan_init(&s->ret, fd, false, 0, s->m->uri);
	s->c.tls = s->ret.tls = s->tls;
	s->uri = u;
	return 0;
}

void sender_connect_urgent(struct sender *s, const struct mig_uri *u)
{
	struct timeval tv = { .tv_sec = (time_t)(s->m->stall_timeout_ms / 1000),
			      .tv_usec = (suseconds_t)(s->m->stall_timeout_ms % 1000) * 1000 };
	struct stream_header h;
	struct chan c;
	int fd = uri_connect(u, CONNECT_MS);

	if (fd < 0) {
		pr_warn("migration: no second connection for postcopy's requested pages; they "
			"will share the first");
		return;
	}
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	s->urgent_fd = fd;
	if (s->tls) {
		s->urgent_hello_due = true;
		return;
	}
	chan_init(&c, fd, false, 0, s->m->uri);
	stream_header_init(&h, FLAG_URGENT_HELLO);
	if (record_write(&c, REC_HEADER, 0, &h, sizeof(h)) < 0) {
		close(fd);
		s->urgent_fd = -1;
	}
}

int sender_urgent_hello(struct sender *s)
{
	struct stream_header h;
	struct chan c;
	bool ok;

	if (!s->urgent_hello_due)
		return 0;
	s->urgent_hello_due = false;
	s->urgent_tls = sender_tls(s, s->uri, s->urgent_fd, &ok);
	chan_init(&c, s->urgent_fd, false, 0, s->m->uri);
	c.tls = s->urgent_tls;
	stream_header_init(&h, FLAG_URGENT_HELLO);
	if (!ok || record_write(&c, REC_HEADER, 0, &h, sizeof(h)) < 0) {
		pr_err("%s: the second connection (postcopy's requested pages) failed", s->m->uri);
		return -1;
	}
	return 0;
}

void sender_free(struct sender *s)
{
	free(s->stage);
	s->stage = NULL;
	if (s->urgent_fd >= 0)
		close(s->urgent_fd);
	s->urgent_fd = -1;
	tls_free(s->tls);
	tls_free(s->urgent_tls);
	tls_creds_free(s->tls_creds);
	s->tls = s->urgent_tls = NULL;
	s->tls_creds = NULL;
}


static void rate_limit(struct sender *s, uint64_t bytes)
{
	uint64_t bw = s->m->max_bandwidth, due_ns;
	struct timespec ts;

	if (!bw)
		return;
	s->rate_bytes += bytes;
	due_ns = s->rate_bytes * 1000000000ULL / bw;
	if (now_ns() - s->rate_t0 < due_ns) {
		uint64_t wait = due_ns - (now_ns() - s->rate_t0);

		ts.tv_sec = (time_t)(wait / 1000000000ULL);
		ts.tv_nsec = (long)(wait % 1000000000ULL);
		nanosleep(&ts, NULL);   /* pacing, not synchronisation */
	}
}

int sender_flush(struct sender *s)
{
	struct iovec iov[3];
	uint64_t before = s->c.bytes;

	if (!s->hdr.count)
		return 0;
	iov[0] = (struct iovec){ &s->hdr, sizeof(s->hdr) };
	iov[1] = (struct iovec){ s->entries, s->hdr.count * sizeof(uint64_t) };
	iov[2] = (struct iovec){ s->stage, (size_t)s->staged * PAGE };
	if ((s->staged ? record_writev_crc(&s->c, REC_RAM, s->phase, iov, 3, s->stage_crc) :
			 record_writev(&s->c, REC_RAM, s->phase, iov, 2)) < 0)
		return -1;
	s->round_bytes += s->c.bytes - before;
	if (!s->unpaced)
		rate_limit(s, s->c.bytes - before);
	if (s->quiet)
		goto done;
	pthread_mutex_lock(&s->m->stats_lock);
	s->m->stats.transferred = s->c.bytes;
	s->m->stats.pages_normal = s->pages_data;
	s->m->stats.pages_zero = s->pages_zero;
	if (s->phase == RAM_PHASE_BULK)
		s->m->stats.ram_remaining = s->scan_left;
	if (now_ns() > s->pass_t0)
		s->m->stats.throughput_bps = s->round_bytes * 1000000000ULL / (now_ns() - s->pass_t0);
	pthread_mutex_unlock(&s->m->stats_lock);
done:
	s->hdr.count = 0;
	s->staged = 0;
	s->stage_crc = 0;
	return migration_cancelled(s->m) ? -1 : 0;
}

/* Queue page `gpa` (host copy at `p`) for sending. */
int sender_page(struct sender *s, uint64_t gpa, const uint8_t *p)
{
	uint8_t *copy;

	if (s->hdr.count == RAM_BATCH_SEND_PAGES && sender_flush(s) < 0)
		return -1;
	copy = s->stage + (size_t)s->staged * PAGE;
	memcpy(copy, p, PAGE);
	if (guest_page_is_zero(copy)) {
		s->entries[s->hdr.count++] = gpa | RAM_ENTRY_ZERO;
		s->pages_zero++;
		return 0;
	}
	s->stage_crc = crc32c(s->stage_crc, copy, PAGE);
	s->entries[s->hdr.count++] = gpa;
	s->staged++;
	s->pages_data++;
	return 0;
}

/* First pass: every page that was ever written (SEEK_DATA on the memfd). */
int sender_all(struct sender *s)
{
	uint64_t scanned = 0;

	for (unsigned i = 0; i < s->vm->mem.nr_regions; i++) {
		struct mem_region *r = &s->vm->mem.regions[i];
		uint64_t pos = 0;

		while (pos < r->size) {
			off_t d = r->file_backed ? (off_t)pos : lseek(r->memfd, (off_t)pos, SEEK_DATA);
			off_t h = r->file_backed ? (off_t)r->size : d < 0 ? -1 : lseek(r->memfd, d, SEEK_HOLE);

			if (d < 0 && errno == ENXIO)
				break;
			if (d < 0 || h < 0) {
				pr_err("SEEK_DATA on guest RAM: %s", strerror(errno));
				return -1;
			}
			for (uint64_t p = (uint64_t)d; p < (uint64_t)h && p < r->size; p += PAGE) {
				/* Between batches: a switch to postcopy wanted now? */
				if (!s->hdr.count && s->m->postcopy_ram &&
				    atomic_load(&s->m->postcopy_start)) {
					s->scan_stopped = true;
					s->scan_region = i;
					s->scan_off = p;
					return 0;
				}
				/* What is left of the scan: an upper bound, for the progress. */
				s->scan_left = s->vm->mem.ram_size - scanned - p;
				if (sender_page(s, r->gpa + p, r->hva + p) < 0)
					return -1;
			}
			pos = (uint64_t)h;
		}
		scanned += r->size;
	}
	s->scan_left = 0;
	return sender_flush(s);
}

/* Send every page set in `bits` (one bitmap per region); clears them. */
int sender_dirty(struct sender *s, uint64_t **bits)
{
	for (unsigned i = 0; i < s->vm->mem.nr_regions; i++) {
		struct mem_region *r = &s->vm->mem.regions[i];
		uint64_t nw = (r->size / PAGE + 63) / 64;

		for (uint64_t w = 0; w < nw; w++) {
			while (bits[i][w]) {
				uint64_t page = w * 64 + (uint64_t)__builtin_ctzll(bits[i][w]);

				bits[i][w] &= bits[i][w] - 1;
				if (sender_page(s, r->gpa + page * PAGE, r->hva + page * PAGE) < 0)
					return -1;
			}
		}
	}
	return sender_flush(s);
}

/* Harvest and take everything dirtied into `bits`; returns how many pages
 * `bits` now holds (it may still hold some from an unsent collect). */
int64_t sender_collect(struct sender *s, uint64_t **bits)
{
	uint64_t n = 0;

	if (dirty_harvest(s->vm) < 0)
		return -1;
	for (unsigned i = 0; i < s->vm->mem.nr_regions; i++) {
		uint64_t nw = (s->vm->mem.regions[i].size / PAGE + 63) / 64;

		dirty_take(s->vm, i, bits[i]);
		for (uint64_t w = 0; w < nw; w++)
			n += (uint64_t)__builtin_popcountll(bits[i][w]);
	}
	return (int64_t)n;
}

void page_bits_free(uint64_t **b)
{
	for (unsigned i = 0; b && i < GUEST_MEM_MAX_REGIONS; i++)
		free(b[i]);
	free(b);
}

uint64_t **page_bits_alloc(struct vm *vm)
{
	uint64_t **b = calloc(GUEST_MEM_MAX_REGIONS, sizeof(*b));

	for (unsigned i = 0; b && i < vm->mem.nr_regions; i++) {
		b[i] = calloc((vm->mem.regions[i].size / PAGE + 63) / 64, sizeof(uint64_t));
		if (!b[i]) {
			page_bits_free(b);
			return NULL;
		}
	}
	return b;
}

int sender_read_reply(struct sender *s, uint32_t want, const char *phase)
{
	char msg[512];
	uint32_t code;

	if (handover_read_reply(&s->ret, &code, msg, sizeof(msg)) < 0) {
		pr_err("destination gave no reply %s", phase);
		return -1;
	}
	if (code == want)
		return 0;
	if (code == REPLY_ERROR)
		pr_err("destination refused the VM: %s", msg);
	else
		pr_err("destination answered %u %s, expected %u", code, phase, want);
	return -1;
}

