// SPDX-License-Identifier: MIT
/*
 * The destination's reader. Every record goes through record_read(), which
 * bounds lengths by type and checks CRCs; here we add the order of records,
 * the RAM batches' contents and the end record's totals.
 *
 * On a socket each record header is first peeked at (not consumed): a
 * source that stalls or goes away between records gets a message of its
 * own, and knowing the header tells a corrupt record (exit 2) from a
 * connection lost in the middle of one (exit 1).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "migration/crc32c.h"
#include "migration/stream_rx.h"
#include "migration/tls.h"
#include "vmm/failpoint.h"
#include "vmm/log.h"

void stream_rx_init(struct stream_rx *rx, struct chan *c, bool socket, unsigned timeout_s)
{
	memset(rx, 0, sizeof(*rx));
	rx->c = c;
	rx->socket = socket;
	rx->timeout_s = timeout_s;
	pthread_mutex_init(&rx->send_lock, NULL);
}

/* The return path: through TLS when the connection has it. */
static int send_all(struct chan *c, const uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = c->tls ? tls_send(c->tls, buf + off, len - off) :
				     send(c->fd, buf + off, len - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		off += (size_t)n;
	}
	return 0;
}

int stream_rx_send(struct stream_rx *rx, uint32_t type, const void *payload, size_t len)
{
	struct record_hdr h = { .type = type, .length = len };
	uint8_t *buf = malloc(sizeof(h) + len + 4);
	uint32_t crc;
	int ret;

	if (!buf)
		return -1;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), payload, len);
	crc = crc32c(0, buf, sizeof(h) + len);
	memcpy(buf + sizeof(h) + len, &crc, 4);
	pthread_mutex_lock(&rx->send_lock);
	ret = send_all(rx->c, buf, sizeof(h) + len + 4);
	pthread_mutex_unlock(&rx->send_lock);
	free(buf);
	return ret;
}

int stream_rx_reply(struct stream_rx *rx, uint32_t code, const char *text)
{
	size_t tlen = text ? strnlen(text, REPLY_MAX_TEXT - 1) : 0;
	uint8_t buf[sizeof(struct record_hdr) + sizeof(struct stream_reply) + REPLY_MAX_TEXT + 4];
	struct stream_reply r = { .code = code, .len = tlen ? (uint32_t)tlen + 1 : 0 };
	struct record_hdr h = { .type = REC_REPLY, .length = sizeof(r) + r.len };
	size_t len = sizeof(h) + h.length + 4;
	uint32_t crc;
	int ret;

	if (!rx->socket)
		return 0;       /* a stream without a return path (the fuzzer's) */
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), &r, sizeof(r));
	memcpy(buf + sizeof(h) + sizeof(r), text ? text : "", r.len ? tlen : 0);
	if (r.len)
		buf[sizeof(h) + sizeof(r) + tlen] = 0;
	crc = crc32c(0, buf, sizeof(h) + h.length);
	memcpy(buf + sizeof(h) + h.length, &crc, 4);
	pthread_mutex_lock(&rx->send_lock);
	ret = send_all(rx->c, buf, len);
	pthread_mutex_unlock(&rx->send_lock);
	return ret;
}

void stream_rx_free(struct stream_rx *rx)
{
	ram_pipe_finish(&rx->pipe);
	rx->c->rxbuf = NULL;
	record_free(&rx->machine);
	record_free(&rx->state);
	record_free(&rx->postcopy);
	ram_loader_free(&rx->ram);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *want_name(uint32_t want)
{
	return want ? record_type_name(want) : "next";
}

static int peek_failed(struct stream_rx *rx, uint32_t want, const char *why)
{
	pr_err("%s: %s after %llu bytes, waiting for the %s record", rx->c->name, why,
	       (unsigned long long)rx->c->bytes, want_name(want));
	return -1;
}

/* Wait until a whole record header can be read, without reading it. */
static int rx_peek(struct stream_rx *rx, struct record_hdr *h, uint32_t want)
{
	int64_t deadline = mono_ms() + (int64_t)rx->timeout_s * 1000;
	struct timespec partial_wait = { 0, 1000000 };

	for (;;) {
		struct pollfd p = { .fd = rx->c->fd, .events = POLLIN | POLLRDHUP };
		int64_t left = deadline - mono_ms();
		ssize_t n;

		if (left <= 0) {
			pr_err("%s: no data for %u s after %llu bytes, waiting for the %s record: giving up",
			       rx->c->name, rx->timeout_s, (unsigned long long)rx->c->bytes, want_name(want));
			return -1;
		}
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
			return peek_failed(rx, want, strerror(errno));
		n = recv(rx->c->fd, h, sizeof(*h), MSG_PEEK | MSG_DONTWAIT);
		if (n == (ssize_t)sizeof(*h))
			return 0;
		if (n == 0)
			return peek_failed(rx, want, "connection closed");
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return peek_failed(rx, want, strerror(errno));
		if (n > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
			return peek_failed(rx, want, "connection closed mid-record");
		/* Part of a header: poll() would return at once, so pace the retries. */
		if (n > 0)
			nanosleep(&partial_wait, NULL);
	}
}

/* Would record_read() take this header (type, order, bound)? */
static bool header_acceptable(const struct record_hdr *h, uint32_t want)
{
	return h->type && h->type <= REC_TYPE_MAX && (!want || h->type == want) &&
	       h->length <= record_max_length(h->type);
}

static int rx_read(struct stream_rx *rx, struct record *rec, uint32_t want)
{
	struct record_hdr h;
	uint64_t before = rx->c->bytes;

	rx->io_error = false;
	/* TLS cannot be peeked at: its reads are bounded by the socket's
	 * timeout, and the chan says whether a failure was the transport's. */
	if (rx->c->tls) {
		if (record_read(rx->c, rec, want) == 0)
			return 0;
		rx->io_error = rx->c->io_failed;
		return -1;
	}
	if (rx->socket && rx_peek(rx, &h, want) < 0) {
		rx->io_error = true;
		return -1;
	}
	if (record_read(rx->c, rec, want) == 0)
		return 0;
	/* A bad header is refused before its payload is read, a bad CRC after
	 * the whole record; any other failure was the connection's. */
	if (rx->socket && header_acceptable(&h, want))
		rx->io_error = rx->c->bytes - before != sizeof(h) + h.length + 4;
	return -1;
}

int stream_rx_open(struct stream_rx *rx)
{
	struct record rec;
	int ret;

	if (rx_read(rx, &rec, REC_HEADER) < 0)
		return -1;
	ret = stream_header_check(&rec, &rx->hdr);
	record_free(&rec);
	if (ret < 0)
		return -1;
	if (rx->hdr.flags & ~FLAG_URGENT_CHANNEL) {
		pr_err("%s: header flags 0x%x: not a live migration stream (a snapshot file sent as is?)",
		       rx->c->name, rx->hdr.flags);
		return -1;
	}
	return rx_read(rx, &rx->machine, REC_MACHINE);
}

static int check_end(struct stream_rx *rx, const struct record *rec, uint64_t ram_size)
{
	struct stream_end *e = &rx->end;
	uint64_t before = rx->c->records - 1;

	if (rec->length != sizeof(*e)) {
		pr_err("%s: end record of %llu bytes, expected %zu", rx->c->name,
		       (unsigned long long)rec->length, sizeof(*e));
		return -1;
	}
	memcpy(e, rec->payload, sizeof(*e));
	if (e->records != before) {
		pr_err("%s: end record counts %llu records, %llu arrived", rx->c->name,
		       (unsigned long long)e->records, (unsigned long long)before);
		return -1;
	}
	if (e->pages_present != rx->ram.pages_data || e->pages_zero != rx->ram.pages_zero) {
		pr_err("%s: end record counts %llu data and %llu zero pages, %llu and %llu arrived",
		       rx->c->name, (unsigned long long)e->pages_present, (unsigned long long)e->pages_zero,
		       (unsigned long long)rx->ram.pages_data, (unsigned long long)rx->ram.pages_zero);
		return -1;
	}
	if (e->ram_size != ram_size) {
		pr_err("%s: end record says %llu bytes of RAM, the machine has %llu", rx->c->name,
		       (unsigned long long)e->ram_size, (unsigned long long)ram_size);
		return -1;
	}
	return 0;
}

/* Tests kill the destination at the first RAM record of a precopy pass
 * (record flags name the pass; unknown values are only informational), or
 * for the final pass at the state record if no page came before it. */
static void phase_failpoint(struct stream_rx *rx, uint32_t phase)
{
	static const char *const names[] = {
		[RAM_PHASE_BULK] = "dst-kill-bulk", [RAM_PHASE_ROUND] = "dst-kill-rounds",
		[RAM_PHASE_FINAL] = "dst-kill-final",
	};

	if (phase > RAM_PHASE_FINAL || (rx->phases_seen & (1U << phase)))
		return;
	rx->phases_seen |= 1U << phase;
	failpoint_kill(names[phase]);
}

/* One RAM record, read into the pipe's next buffer, checked and handed
 * over. A record larger than the buffers (not minivmm's) is applied here,
 * once the ones before it are in. */
static int read_ram_batch(struct stream_rx *rx, struct record *rec)
{
	void *buf = ram_pipe_buffer(&rx->pipe);
	int ret;

	if (!buf)
		return -1;
	rx->c->rxbuf = buf;
	rx->c->rxcap = rx->pipe.cap;
	if (rx_read(rx, rec, 0) < 0)
		return -1;
	if (rec->type != REC_RAM)
		return 0;
	if (rx->postcopy.payload) {
		pr_err("%s: record %llu: a ram record after the postcopy record (expected state)",
		       rx->c->name, (unsigned long long)rx->c->records - 1);
		record_free(rec);
		return -1;
	}
	phase_failpoint(rx, rec->flags);
	if (ram_batch_check(&rx->ram, rec->payload, rec->length) < 0) {
		record_free(rec);
		return -1;
	}
	if (rec->borrowed) {
		ram_pipe_submit(&rx->pipe);
		return 0;
	}
	ret = ram_pipe_drain(&rx->pipe);
	if (ret == 0 && (ret = ram_batch_apply(&rx->ram, rec->payload)) < 0)
		pr_err("%s", rx->ram.error);
	record_free(rec);
	return ret;
}

/* The switch to postcopy: one bit per page of this machine's RAM, as many
 * set as it says, none past the end. */
static int check_postcopy(struct stream_rx *rx, const struct record *rec)
{
	uint64_t pages = rx->ram.mem->ram_size / 4096, words = (pages + 63) / 64, set = 0;
	struct postcopy_switch sw;
	const uint64_t *map;

	if (rx->postcopy.payload) {
		pr_err("%s: a second postcopy record", rx->c->name);
		return -1;
	}
	if (rec->length < sizeof(sw)) {
		pr_err("%s: postcopy record of %llu bytes, too short", rx->c->name,
		       (unsigned long long)rec->length);
		return -1;
	}
	memcpy(&sw, rec->payload, sizeof(sw));
	if (sw.pages != pages || rec->length != sizeof(sw) + words * 8) {
		pr_err("%s: postcopy record for %llu pages in %llu bytes; the machine has %llu pages",
		       rx->c->name, (unsigned long long)sw.pages, (unsigned long long)rec->length,
		       (unsigned long long)pages);
		return -1;
	}
	map = (const uint64_t *)((const uint8_t *)rec->payload + sizeof(sw));
	for (uint64_t w = 0; w < words; w++)
		set += (uint64_t)__builtin_popcountll(map[w]);
	if (set != sw.needed || (pages % 64 && map[words - 1] >> (pages % 64))) {
		pr_err("%s: postcopy record: its page list does not match its count", rx->c->name);
		return -1;
	}
	return 0;
}

/* ram* (and sync), then [postcopy] state: the only records allowed between machine and end. */
static int read_ram(struct stream_rx *rx)
{
	struct record rec;

	for (;;) {
		if (read_ram_batch(rx, &rec) < 0)
			return -1;
		if (rec.type == REC_RAM)
			continue;
		if (rec.type == REC_POSTCOPY) {
			if (check_postcopy(rx, &rec) < 0) {
				record_free(&rec);
				return -1;
			}
			rx->postcopy = rec;
			continue;
		}
		if (rec.type == REC_SYNC) {
			if (ram_pipe_drain(&rx->pipe) < 0)
				return -1;
			if (stream_rx_reply(rx, REPLY_SYNCED, NULL) < 0) {
				pr_err("%s: cannot answer a sync: %s", rx->c->name, strerror(errno));
				rx->io_error = true;
				return -1;
			}
			continue;
		}
		if (rec.type == REC_STATE) {
			/* Stop-and-copy may have had no page left to send. */
			phase_failpoint(rx, RAM_PHASE_FINAL);
			rx->state = rec;
			return 0;
		}
		pr_err("%s: record %llu: unexpected %s record (expected %s)", rx->c->name,
		       (unsigned long long)rx->c->records - 1, record_type_name(rec.type),
		       rx->postcopy.payload ? "state after postcopy" : "ram or state");
		record_free(&rec);
		return -1;
	}
}

int stream_rx_load(struct stream_rx *rx, struct guest_mem *mem)
{
	struct record rec;
	int ret;

	if (ram_loader_init(&rx->ram, mem) < 0 ||
	    ram_pipe_start(&rx->pipe, &rx->ram, RAM_BATCH_BYTES(RAM_BATCH_SEND_PAGES)) < 0)
		return -1;
	ret = read_ram(rx);
	rx->c->rxbuf = NULL;
	/* Everything received is in guest RAM before the totals are compared. */
	if (ram_pipe_finish(&rx->pipe) < 0 || ret < 0)
		return -1;
	if (rx_read(rx, &rec, REC_END) < 0)
		return -1;
	ret = check_end(rx, &rec, mem->ram_size);
	record_free(&rec);
	return ret;
}

int stream_rx_wait_go(struct stream_rx *rx)
{
	struct record rec;

	if (rx_read(rx, &rec, REC_GO) < 0)
		return -1;
	record_free(&rec);
	return 0;
}
