// SPDX-License-Identifier: MIT
/*
 * Polling virtio-blk driver and its console commands (docs/test-guest.md).
 *
 * A request is a three-descriptor chain at a fixed place: slot s uses
 * descriptors 3s (header, 16 bytes), 3s + 1 (data) and 3s + 2 (status),
 * and its header, status byte and discard range sit in a 64-byte cell of
 * the disk's slot page. Data lives in the shared arena (virtio.c). Free
 * slots form a stack, so with at most QD requests in flight only slots
 * 0..QD-1 are ever used and slot s can own arena bytes [s*BS, (s+1)*BS).
 */
#include "virtio.h"

#define VIRTIO_BLK_F_RO         (1ULL << 5)
#define VIRTIO_BLK_F_FLUSH      (1ULL << 9)
#define VIRTIO_BLK_F_DISCARD    (1ULL << 13)
#define VIRTIO_BLK_F_WRITE_ZEROES (1ULL << 14)
#define BLK_WANT (VIRTIO_BLK_F_RO | VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_DISCARD | \
		  VIRTIO_BLK_F_WRITE_ZEROES)

#define T_IN                    0
#define T_OUT                   1
#define T_FLUSH                 4
#define T_GET_ID                8
#define T_DISCARD               11
#define T_WRITE_ZEROES          13

#define MAX_BLK                 8
#define MAX_SLOTS               64
#define CELL                    64
#define REQ_MAX                 (256 * 1024U)   /* data bytes per request */
#define ID_BYTES                20
#define TIMEOUT_NS              (30000 * NSEC_PER_MSEC)
#define STATUS_TIMEOUT          0x100
#define K_MIX                   0xd6e8feb86659fd93ULL
#define K_STEP                  0x9e3779b97f4a7c15ULL

struct blk {
	struct vdev *v;
	struct vq q;
	u64 sectors;
	u8 *cells;
	unsigned nslots, nfree;
	u16 free[MAX_SLOTS];
	unsigned status;        /* first bad status of the current operation */
	unsigned inflight;
};

static struct blk disks[MAX_BLK];

void blk_init(struct vdev *d)
{
	struct blk *b;
	unsigned i;

	if (d->unit >= MAX_BLK || vdev_begin(d, BLK_WANT) < 0)
		goto fail;
	b = &disks[d->unit];
	b->cells = dma_alloc(MAX_SLOTS * CELL);
	if (!b->cells || vq_setup(&b->q, d, 0, VQ_SIZE_MAX) < 0)
		goto fail;
	b->v = d;
	b->sectors = vdev_cfg32(d, 0) | (u64)vdev_cfg32(d, 4) << 32;
	b->nslots = b->q.size / 3 < MAX_SLOTS ? b->q.size / 3 : MAX_SLOTS;
	for (i = 0; i < b->nslots; i++)         /* slot 0 on top */
		b->free[i] = (u16)(b->nslots - 1 - i);
	b->nfree = b->nslots;
	vdev_driver_ok(d);
	return;
fail:
	d->ok = false;
}

/* ---- requests ---- */

/* Queues one request (not yet published); returns its slot. */
static unsigned submit(struct blk *b, u32 type, u64 sector, const void *data, u32 len,
		       bool to_guest)
{
	unsigned s = b->free[--b->nfree];
	u8 *cell = b->cells + s * CELL;
	struct vring_desc *d = &b->q.desc[3 * s];
	u16 first = (u16)(3 * s);

	memcpy(cell, &type, 4);
	memset(cell + 4, 0, 4);
	memcpy(cell + 8, &sector, 8);
	cell[16] = 0xff;
	d[0] = (struct vring_desc){ (u64)(uintptr_t)cell, 16, VRING_DESC_F_NEXT,
				    (u16)(first + (len ? 1 : 2)) };
	d[1] = (struct vring_desc){ (u64)(uintptr_t)data, len,
				    VRING_DESC_F_NEXT | (to_guest ? VRING_DESC_F_WRITE : 0),
				    (u16)(first + 2) };
	d[2] = (struct vring_desc){ (u64)(uintptr_t)(cell + 16), 1, VRING_DESC_F_WRITE, 0 };
	vq_add(&b->q, first);
	b->inflight++;
	return s;
}

/* Takes completed requests back; returns how many. */
static unsigned reap(struct blk *b)
{
	unsigned n = 0;
	u32 id, len;

	while (vq_used(&b->q, &id, &len)) {
		unsigned s = id / 3;
		u8 st = b->cells[s * CELL + 16];

		if (st && !b->status)
			b->status = st;
		b->free[b->nfree++] = (u16)s;
		b->inflight--;
		n++;
	}
	return n;
}

/* Publishes what was queued and waits until at most `left` are in flight. */
static bool wait_until(struct blk *b, unsigned left)
{
	u64 start = now_ns(0), last = start, now;

	vq_publish(&b->q);
	while (b->inflight > left) {
		if (reap(b)) {
			last = now_ns(0);
			continue;
		}
		now = now_ns(0);
		if (now - last > STALL_NS) {            /* a lost kick: never wait forever */
			b->q.stalls++;
			vq_kick(&b->q);
			last = now;
		}
		if (now - start > TIMEOUT_NS) {
			b->status = STATUS_TIMEOUT;
			return false;
		}
		cpu_relax();
	}
	return true;
}

static unsigned one(struct blk *b, u32 type, u64 sector, const void *data, u32 len,
		    bool to_guest)
{
	b->status = 0;
	submit(b, type, sector, data, len, to_guest);
	wait_until(b, 0);
	return b->status;
}

/* ---- data patterns ---- */

static void pattern(u64 *p, u64 sector, u64 n, u32 seed)
{
	for (; n; n--, sector++) {
		u64 v = (sector << 32 | seed) * K_MIX;
		unsigned i;

		for (i = 1; i <= 64; i++)
			*p++ = v + i * K_STEP;
	}
}

/* Index of the first sector of `n` at `p` that does not match, or n. */
static u64 check(const u64 *p, u64 sector, u64 n, u32 seed)
{
	u64 k;

	for (k = 0; k < n; k++, sector++) {
		u64 v = (sector << 32 | seed) * K_MIX, diff = 0;
		unsigned i;

		for (i = 1; i <= 64; i++)
			diff |= *p++ ^ (v + i * K_STEP);
		if (diff)
			return k;
	}
	return n;
}

enum op { OP_READ, OP_WRITE, OP_VERIFY };

struct rw_result {
	u32 crc;
	u64 bad, first_bad;
};

/* Moves `count` sectors through the arena, a chunk at a time. */
static void rw(struct blk *b, enum op op, u64 sector, u64 count, u32 seed, struct rw_result *r)
{
	u64 chunk = blk_arena_bytes >> 9, per = REQ_MAX >> 9;

	if (chunk > b->nslots * per)
		chunk = b->nslots * per;
	b->status = 0;
	memset(r, 0, sizeof(*r));
	while (count && !b->status) {
		u64 n = count < chunk ? count : chunk, k, bad;

		if (op == OP_WRITE)
			pattern((u64 *)blk_arena, sector, n, seed);
		for (k = 0; k < n; k += per) {
			u64 m = n - k < per ? n - k : per;

			if (!b->nfree)
				wait_until(b, b->nslots - 1);
			submit(b, op == OP_WRITE ? T_OUT : T_IN, sector + k, blk_arena + (k << 9),
			       (u32)(m << 9), op != OP_WRITE);
		}
		if (!wait_until(b, 0))
			break;
		if (op == OP_READ)
			r->crc = crc32_update(r->crc, blk_arena, n << 9);
		if (op == OP_VERIFY) {
			bad = check((const u64 *)blk_arena, sector, n, seed);
			if (bad < n && !r->bad)
				r->first_bad = sector + bad;
			for (; bad < n; bad++)          /* count every bad sector */
				if (check((const u64 *)blk_arena + bad * 64, sector + bad, 1,
					  seed) == 0)
					r->bad++;
		}
		sector += n;
		count -= n;
	}
}

/* ---- benchmark ---- */

struct bench {
	bool rand, write;
	u64 total, bs, qd;
};

static u64 xorshift(u64 *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void bench(struct blk *b, unsigned unit, const struct bench *a)
{
	u64 nreq = a->total / a->bs, blocks = (b->sectors << 9) / a->bs, done = 0, sent = 0;
	u64 seed = 0x9e3779b97f4a7c15ULL, t0, ns, kicks = b->q.kicks, stalls = b->q.stalls;

	b->status = 0;
	t0 = now_ns(0);
	while (done < nreq && !b->status) {
		while (sent < nreq && b->inflight < a->qd) {
			u64 blk = a->rand ? xorshift(&seed) % blocks : sent % blocks;
			unsigned s = b->free[b->nfree - 1];

			submit(b, a->write ? T_OUT : T_IN, blk * (a->bs >> 9), blk_arena + s * a->bs,
			       (u32)a->bs, !a->write);
			sent++;
		}
		if (!wait_until(b, b->inflight - 1))
			break;
		done = sent - b->inflight;
	}
	wait_until(b, 0);
	ns = now_ns(0) - t0;
	if (b->status) {
		out_line("BLKBENCH i=%u err status=%u", unit, b->status);
		return;
	}
	out_line("BLKBENCH i=%u mode=%s op=%s bs=%llu qd=%llu bytes=%llu ns=%llu iops=%llu "
		 "mbps=%llu kicks=%llu stalls=%llu", unit, a->rand ? "rand" : "seq",
		 a->write ? "write" : "read", a->bs, a->qd, nreq * a->bs, ns,
		 ns ? nreq * 1000000000ULL / ns : 0, rate_mbps(nreq * a->bs, ns),
		 b->q.kicks - kicks, b->q.stalls - stalls);
}

static void cmd_bench(struct blk *b, unsigned unit, char *p)
{
	const char *mode = next_token(&p), *op = next_token(&p);
	struct bench a;

	if (!mode || !op || (strcmp(mode, "seq") && strcmp(mode, "rand")) ||
	    (strcmp(op, "read") && strcmp(op, "write")) || !arg_u64(&p, &a.total) ||
	    !arg_u64(&p, &a.bs) || !arg_u64(&p, &a.qd)) {
		out_line("ERR usage: blk bench N seq|rand read|write TOTAL BS QD");
		return;
	}
	a.rand = !strcmp(mode, "rand");
	a.write = !strcmp(op, "write");
	if (!a.bs || a.bs % 512 || a.bs > REQ_MAX || a.total < a.bs || !a.qd ||
	    a.qd > b->nslots || a.bs * a.qd > blk_arena_bytes || a.bs > (b->sectors << 9)) {
		out_line("ERR bad bench size: BS a multiple of 512 up to %u, QD up to %u, "
			 "BS*QD up to %llu", REQ_MAX, b->nslots, blk_arena_bytes);
		return;
	}
	bench(b, unit, &a);
}

/* ---- commands ---- */

static void cmd_info(struct blk *b, unsigned unit)
{
	char id[ID_BYTES + 1], *serial = (char *)blk_arena;
	unsigned st, i;

	memset(serial, 0, ID_BYTES);
	st = one(b, T_GET_ID, 0, serial, ID_BYTES, true);
	for (i = 0; i < ID_BYTES && !st && serial[i]; i++)
		id[i] = serial[i] > 0x20 && serial[i] < 0x7f ? serial[i] : '?';
	id[i] = '\0';
	out_line("BLK i=%u sectors=%llu ro=%u serial=%s flush=%u discard=%u wzeroes=%u", unit,
		 b->sectors, !!(b->v->features & VIRTIO_BLK_F_RO), id,
		 !!(b->v->features & VIRTIO_BLK_F_FLUSH),
		 !!(b->v->features & VIRTIO_BLK_F_DISCARD),
		 !!(b->v->features & VIRTIO_BLK_F_WRITE_ZEROES));
}

static void report(const char *what, unsigned status)
{
	if (status == STATUS_TIMEOUT)
		out_line("BLK %s err status=timeout", what);
	else if (status)
		out_line("BLK %s err status=%u", what, status);
	else
		out_line("BLK %s ok", what);
}

static void cmd_rw(struct blk *b, const char *what, char *p)
{
	enum op op = !strcmp(what, "read") ? OP_READ : !strcmp(what, "write") ? OP_WRITE :
		     OP_VERIFY;
	struct rw_result r;
	u64 sector, count, seed = 0;
	char crc[9];

	if (!arg_u64(&p, &sector) || !arg_u64(&p, &count) || !count ||
	    (op != OP_READ && (!arg_u64(&p, &seed) || seed > 0xffffffffULL))) {
		out_line("ERR usage: blk %s N SECTOR COUNT%s", what, op == OP_READ ? "" : " SEED");
		return;
	}
	rw(b, op, sector, count, (u32)seed, &r);
	if (b->status)
		report(what, b->status);
	else if (op == OP_READ)
		out_line("BLK read ok crc=%s", hex32(crc, r.crc));
	else if (op == OP_WRITE)
		report(what, 0);
	else if (r.bad)
		out_line("BLK verify FAIL bad=%llu first=%llu", r.bad, r.first_bad);
	else
		out_line("BLK verify PASS");
}

/* discard / zero: one range of up to 2^32-1 sectors. */
static void cmd_range(struct blk *b, const char *what, char *p)
{
	bool zero = !strcmp(what, "zero");
	u64 sector, count;
	u8 *range = (u8 *)blk_arena;
	u32 n, flags = 0;

	if (!arg_u64(&p, &sector) || !arg_u64(&p, &count) || !count || count > 0xffffffffULL) {
		out_line("ERR usage: blk %s N SECTOR COUNT", what);
		return;
	}
	n = (u32)count;
	memcpy(range, &sector, 8);
	memcpy(range + 8, &n, 4);
	memcpy(range + 12, &flags, 4);
	report(what, one(b, zero ? T_WRITE_ZEROES : T_DISCARD, 0, range, 16, false));
}

void blk_command(char *p)
{
	const char *sub = next_token(&p);
	struct blk *b;
	u64 unit;

	if (!sub || !arg_u64(&p, &unit)) {
		out_line("ERR usage: blk info|read|write|verify|flush|discard|zero|bench N ...");
		return;
	}
	b = unit < MAX_BLK ? &disks[unit] : NULL;
	if (!b || !b->v) {
		out_line("ERR no blk %llu", unit);
		return;
	}
	if (!strcmp(sub, "info"))
		cmd_info(b, (unsigned)unit);
	else if (!strcmp(sub, "read") || !strcmp(sub, "write") || !strcmp(sub, "verify"))
		cmd_rw(b, sub, p);
	else if (!strcmp(sub, "flush"))
		report(sub, one(b, T_FLUSH, 0, NULL, 0, false));
	else if (!strcmp(sub, "discard") || !strcmp(sub, "zero"))
		cmd_range(b, sub, p);
	else if (!strcmp(sub, "bench"))
		cmd_bench(b, (unsigned)unit, p);
	else
		out_line("ERR unknown blk command: %s", sub);
}
