// SPDX-License-Identifier: MIT
/*
 * Polling virtio-rng driver: `rng N` posts one device-writable buffer at a
 * time (descriptor 0, up to RNG_BUF bytes) until N bytes have come back,
 * and reports how many distinct byte values they hold.
 */
#include "virtio.h"

#define RNG_BUF         (64 * 1024U)
#define RNG_MAX         (16 * MiB)
#define TIMEOUT_NS      (5000 * NSEC_PER_MSEC)

static struct vdev *rng_dev;
static struct vq rng_q;
static u8 *rng_buf;

void rng_init(struct vdev *d)
{
	if (vdev_begin(d, 0) < 0)
		return;
	rng_buf = dma_alloc_raw(RNG_BUF);
	if (!rng_buf || vq_setup(&rng_q, d, 0, VQ_SIZE_MAX) < 0) {
		d->ok = false;
		return;
	}
	vdev_driver_ok(d);
	if (!rng_dev)
		rng_dev = d;
}

/* One buffer of up to `len` bytes; returns the bytes the device wrote. */
static u32 rng_get(u32 len)
{
	u64 start = now_ns(0), last = start, now;
	u32 id, got;

	rng_q.desc[0] = (struct vring_desc){ (u64)(uintptr_t)rng_buf, len, VRING_DESC_F_WRITE, 0 };
	vq_add(&rng_q, 0);
	vq_publish(&rng_q);
	while (!vq_used(&rng_q, &id, &got)) {
		now = now_ns(0);
		if (now - start > TIMEOUT_NS)
			return 0;       /* the buffer stays with the device: give up on it */
		if (now - last > STALL_NS) {
			rng_q.stalls++;
			vq_kick(&rng_q);
			last = now;
		}
		cpu_relax();
	}
	return got < len ? got : len;
}

void rng_command(char *p)
{
	static bool seen[256];
	u8 first[16];
	char hex[33];
	u64 want, done = 0;
	unsigned distinct = 0, i;

	if (!rng_dev) {
		out_line("ERR no rng");
		return;
	}
	if (!arg_u64(&p, &want) || !want || want > RNG_MAX) {
		out_line("ERR usage: rng N (1 to %llu bytes)", RNG_MAX);
		return;
	}
	memset(seen, 0, sizeof(seen));
	while (done < want) {
		u32 n = rng_get(want - done < RNG_BUF ? (u32)(want - done) : RNG_BUF);

		if (!n) {
			out_line("RNG err bytes=%llu", done);
			return;
		}
		for (i = 0; i < n; i++) {
			if (done + i < sizeof(first))
				first[done + i] = rng_buf[i];
			distinct += !seen[rng_buf[i]];
			seen[rng_buf[i]] = true;
		}
		done += n;
	}
	for (i = 0; i < 16 && i < want; i++) {
		hex[2 * i] = "0123456789abcdef"[first[i] >> 4];
		hex[2 * i + 1] = "0123456789abcdef"[first[i] & 15];
	}
	hex[2 * i] = '\0';
	out_line("RNG bytes=%llu distinct=%u hex=%s", done, distinct, hex);
}
