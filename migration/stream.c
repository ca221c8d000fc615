// SPDX-License-Identifier: MIT
/*
 * Everything read here is hostile until its CRC checks out: lengths are
 * bounded by record type before the payload is allocated, and a short read
 * is reported as a truncated stream, never retried forever.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migration/crc32c.h"
#include "migration/tls.h"
#include "migration/state.h"
#include "migration/stream.h"
#include "vmm/log.h"

#define IOV_BATCH 64

void chan_init(struct chan *c, int fd, bool seekable, uint64_t off, const char *name)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->seekable = seekable;
	c->off = off;
	c->name = name;
}

bool chan_pending(const struct chan *c)
{
	return c->tls && tls_pending(c->tls);
}

static ssize_t chan_writev_once(struct chan *c, struct iovec *iov, int n)
{
	if (c->tls)
		return tls_sendv(c->tls, iov, n);
	if (c->seekable)
		return pwritev(c->fd, iov, n > IOV_BATCH ? IOV_BATCH : n, (off_t)c->off);
	return writev(c->fd, iov, n > IOV_BATCH ? IOV_BATCH : n);
}

static ssize_t chan_read_once(struct chan *c, void *buf, size_t len)
{
	if (c->tls)
		return tls_recv(c->tls, buf, len);
	return c->seekable ? pread(c->fd, buf, len, (off_t)c->off) : read(c->fd, buf, len);
}

int chan_writev(struct chan *c, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t r;

		r = chan_writev_once(c, iov, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				pr_err("%s: the peer took no data within the timeout (stalled)", c->name);
			else
				pr_err("%s: write failed: %s", c->name,
				       r < 0 ? strerror(errno) : "no progress");
			return -1;
		}
		c->off += (uint64_t)r;
		c->bytes += (uint64_t)r;
		while (n && (size_t)r >= iov->iov_len) {
			r -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n) {
			iov->iov_base = (uint8_t *)iov->iov_base + r;
			iov->iov_len -= (size_t)r;
		}
	}
	return 0;
}

int chan_write(struct chan *c, const void *buf, size_t len)
{
	struct iovec iov = { (void *)buf, len };

	return chan_writev(c, &iov, 1);
}

int chan_read(struct chan *c, void *buf, size_t len)
{
	uint8_t *p = buf;

	c->io_failed = false;
	while (len) {
		ssize_t r = chan_read_once(c, p, len);

		if (r < 0 && errno == EINTR)
			continue;
		c->io_failed = r <= 0;
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				pr_err("%s: no data within the timeout (peer stalled)", c->name);
			else if (errno == EBADMSG)
				pr_err("%s: a TLS record failed authentication (changed on the way?)",
				       c->name);
			else
				pr_err("%s: read failed: %s", c->name, strerror(errno));
			return -1;
		}
		if (r == 0) {
			if (!c->eof_quiet)
				pr_err("%s: stream truncated after %llu bytes", c->name,
				       (unsigned long long)c->bytes);
			return -1;
		}
		p += r;
		len -= (size_t)r;
		c->off += (uint64_t)r;
		c->bytes += (uint64_t)r;
	}
	return 0;
}

uint64_t record_max_length(uint32_t type)
{
	switch (type) {
	case REC_HEADER:    return sizeof(struct stream_header);
	case REC_MACHINE:   return 1 << 20;
	case REC_RAM:       return RAM_BATCH_BYTES(RAM_BATCH_MAX_PAGES);
	case REC_RAM_INDEX: return 64ULL << 20;     /* 4 bytes per 2 MiB: 32 TiB of RAM */
	case REC_STATE:     return STATE_MAX_SIZE;
	case REC_END:       return sizeof(struct stream_end);
	case REC_GO:        return 0;
	case REC_REPLY:     return sizeof(struct stream_reply) + 1024;
	case REC_SYNC:      return 0;
	case REC_POSTCOPY:  return sizeof(struct postcopy_switch) + (64ULL << 20); /* 2 TiB of RAM */
	case REC_PAGE_REQ:  return PAGE_REQ_MAX * sizeof(uint64_t);
	case REC_RESUME:    return sizeof(struct postcopy_resume);
	case REC_WORKING_SET: return sizeof(struct page_set) + (64ULL << 20);
	default:            return 0;
	}
}

const char *record_type_name(uint32_t type)
{
	static const char *const names[] = {
		[REC_HEADER] = "header", [REC_MACHINE] = "machine", [REC_RAM] = "ram",
		[REC_RAM_INDEX] = "ram-index", [REC_STATE] = "state", [REC_END] = "end",
		[REC_GO] = "go", [REC_REPLY] = "reply", [REC_SYNC] = "sync",
		[REC_POSTCOPY] = "postcopy", [REC_PAGE_REQ] = "page-request",
		[REC_RESUME] = "resume", [REC_WORKING_SET] = "working-set",
	};

	return type && type <= REC_TYPE_MAX ? names[type] : "unknown";
}

static int record_send(struct chan *c, struct record_hdr *h, const struct iovec *iov, int n,
		       uint32_t crc)
{
	struct iovec v[IOV_BATCH + 2];

	v[0] = (struct iovec){ h, sizeof(*h) };
	memcpy(&v[1], iov, (size_t)n * sizeof(*iov));
	v[n + 1] = (struct iovec){ &crc, sizeof(crc) };
	if (chan_writev(c, v, n + 2) < 0)
		return -1;
	c->records++;
	return 0;
}

int record_writev_crc(struct chan *c, uint32_t type, uint32_t flags, const struct iovec *iov,
		      int n, uint32_t last_crc)
{
	struct record_hdr h = { .type = type, .flags = flags };
	uint32_t crc;

	if (n < 1 || n > IOV_BATCH)
		return -1;
	for (int i = 0; i < n; i++)
		h.length += iov[i].iov_len;
	crc = crc32c(0, &h, sizeof(h));
	for (int i = 0; i < n - 1; i++)
		crc = crc32c(crc, iov[i].iov_base, iov[i].iov_len);
	crc = crc32c_combine(crc, last_crc, iov[n - 1].iov_len);
	return record_send(c, &h, iov, n, crc);
}

int record_writev(struct chan *c, uint32_t type, uint32_t flags, const struct iovec *iov, int n)
{
	struct record_hdr h = { .type = type, .flags = flags };
	uint32_t crc;

	if (n > IOV_BATCH)
		return -1;
	for (int i = 0; i < n; i++)
		h.length += iov[i].iov_len;
	crc = crc32c(0, &h, sizeof(h));
	for (int i = 0; i < n; i++)
		crc = crc32c(crc, iov[i].iov_base, iov[i].iov_len);
	return record_send(c, &h, iov, n, crc);
}

int record_write(struct chan *c, uint32_t type, uint32_t flags, const void *payload, size_t len)
{
	struct iovec iov = { (void *)payload, len };

	return record_writev(c, type, flags, &iov, len ? 1 : 0);
}

int record_read(struct chan *c, struct record *rec, uint32_t want)
{
	struct record_hdr h;
	uint32_t crc, want_crc;

	memset(rec, 0, sizeof(*rec));
	if (chan_read(c, &h, sizeof(h)) < 0)
		return -1;
	if (!h.type || h.type > REC_TYPE_MAX || (want && h.type != want)) {
		pr_err("%s: record %llu has type %u (%s), expected %s", c->name,
		       (unsigned long long)c->records, h.type, record_type_name(h.type),
		       want ? record_type_name(want) : "a known type");
		return -1;
	}
	if (h.length > record_max_length(h.type)) {
		pr_err("%s: %s record of %llu bytes exceeds the %llu-byte bound", c->name,
		       record_type_name(h.type), (unsigned long long)h.length,
		       (unsigned long long)record_max_length(h.type));
		return -1;
	}
	/* Only RAM batches borrow: they are consumed before the next read. */
	rec->borrowed = c->rxbuf && h.type == REC_RAM && h.length && h.length <= c->rxcap;
	rec->payload = rec->borrowed ? c->rxbuf : h.length ? malloc(h.length) : NULL;
	if (h.length && !rec->payload) {
		pr_err("%s: out of memory for a %llu-byte record", c->name,
		       (unsigned long long)h.length);
		return -1;
	}
	if ((h.length && chan_read(c, rec->payload, h.length) < 0) ||
	    chan_read(c, &crc, sizeof(crc)) < 0)
		goto err;
	want_crc = crc32c(crc32c(0, &h, sizeof(h)), rec->payload, h.length);
	if (crc != want_crc) {
		pr_err("%s: CRC mismatch in %s record %llu (stream corrupt)", c->name,
		       record_type_name(h.type), (unsigned long long)c->records);
		goto err;
	}
	rec->type = h.type;
	rec->flags = h.flags;
	rec->length = h.length;
	c->records++;
	return 0;
err:
	record_free(rec);
	return -1;
}

const char *stream_reply_text(const struct record *rec, char *buf, size_t len)
{
	size_t head = sizeof(struct stream_reply);

	if (len && rec->length <= head)
		buf[0] = 0;
	else
		log_escape_mem(buf, len, (const char *)rec->payload + head, rec->length - head);
	return buf;
}

void record_free(struct record *rec)
{
	if (!rec->borrowed)
		free(rec->payload);
	rec->payload = NULL;
	rec->borrowed = false;
}

void stream_header_init(struct stream_header *h, uint32_t flags)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->magic, STREAM_MAGIC, 8);
	h->major = STREAM_MAJOR;
	h->minor = STREAM_MINOR;
	h->flags = flags;
}

int stream_header_check(const struct record *rec, struct stream_header *out)
{
	if (rec->type != REC_HEADER || rec->length != sizeof(*out)) {
		pr_err("not a minivmm stream (no header record)");
		return -1;
	}
	memcpy(out, rec->payload, sizeof(*out));
	if (memcmp(out->magic, STREAM_MAGIC, 8)) {
		pr_err("not a minivmm stream (bad magic)");
		return -1;
	}
	if (out->major != STREAM_MAJOR) {
		pr_err("stream format version %u.%u; this minivmm reads version %u.x",
		       out->major, out->minor, STREAM_MAJOR);
		return -1;
	}
	return 0;
}
