// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the virtqueues a hostile guest hands the VMM. Each
 * input lays out a split virtqueue in guest RAM (descriptor table, avail
 * ring, used ring, two indirect tables, the buffers) and has it walked:
 * by the bare walker (devices/virtqueue.c: vq_validate, vq_pop with its
 * loop, length, range and indirect checks, vq_unpop, vq_push,
 * vq_should_notify), or by a device that parses what the chains carry:
 * virtio-blk (request header, data and status layout, merging, every
 * request type, on a 256 KiB memfd image), virtio-net (transmit chains
 * written to a datagram socket standing in for the tap, receive chains
 * filled from it) or virtio-rng, each set up through its MMIO registers as
 * a driver would, then poked at through them as the input says, and
 * served on this thread (fuzz_devices.h). Safe without
 * KVM: devices only ever see guest RAM (two memfd regions, 32 MiB at 0
 * and 64 KiB at 4 GiB, a hole between, guard pages around each mapping,
 * so a stray access outside RAM faults) and file descriptors. Every chain
 * the bare walker pops is checked to lie inside RAM.
 *
 * Set-up (RAM, the devices, the image, the socket) is done once; an input
 * costs a hole punched over the RAM it touched, the rings it writes and
 * the walk. Input, little-endian:
 *   u8 mode   bits 0-1: 0 bare walker, 1 virtio-blk, 2 virtio-net, 3 virtio-rng
 *             bit 2: descriptors raw (16 bytes each) instead of compact (6)
 *             bit 3: INDIRECT_DESC negotiated; bit 4: EVENT_IDX negotiated
 *             bit 5: walker: unpop and pop again; blk: read-only image;
 *                    net: the receive queue instead of the transmit queue
 *             bits 6-7: ring placement: apart, used ring over the avail
 *                    ring, used ring over the descriptor table, or three
 *                    u32 guest addresses (bit 31: in the high region) follow
 *   u8 size   < 0xf0: 1 << (size % 12) entries; else a u16 size follows
 *   u16 avail idx (minus start), [u16 start: the bare walker's first index;
 *   a device starts at 0], u16 avail flags, u16 used_event
 *   [3 x u32 ring addresses]
 *   [a device: u8 r, r register accesses after the driver's set-up, each
 *   u8 offset / 4, u8 (bits 0-1 length 1, 2, 4 or 8; bit 2 write; bits 3-4
 *   added to the offset), u32 value]
 *   u8 k, k avail ring entries (u8 compact, u16 raw)
 *   3 tables (main, indirect 0, indirect 1): u8 n, n descriptors, u8 fill;
 *     fill != 0: one more descriptor, repeated 4 * fill times as a chain
 *   the rest: bytes at the data area (blk's headers; net's received frames)
 * A compact descriptor: u8 area/offset, u8 offset, u16 length code, u8
 * flags (bits 3-7: unknown flag bits), u8 next.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices/virtio_rng.h"
#include "tests/fuzz/fuzz_common.h"
#include "tests/fuzz/fuzz_devices.h"

#define RAM0            (32ULL << 20)
#define HIGH_GPA        (4ULL << 30)
#define HIGH_RAM        (64ULL << 10)
#define GUARD           (64ULL << 10)
#define A_DESC          0x10000ULL
#define A_AVAIL         0x20000ULL
#define A_USED          0x30000ULL
#define A_IND0          0x40000ULL
#define A_IND1          0x50000ULL
#define A_DATA          0x60000ULL
#define TABLE_MAX       1024            /* entries written into any table */
#define IMG_SIZE        (256ULL << 10)
#define TOUCH_MAX       4096            /* bytes the bare walker's "device" moves a chain */

#define REG_QUEUE_SEL   0x030
#define REG_QUEUE_NUM   0x038
#define REG_QUEUE_READY 0x044
#define REG_STATUS      0x070

static struct vm vm;
static struct blk *blk;
static struct net *net;
static struct virtio_device *rng;
static int img_fd, tap_peer;
static struct vq_elem elem, elem2;
static uint8_t scratch[TOUCH_MAX];
static bool verbose;                    /* FUZZ_LOG: what became of each input */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int sv[2];

	(void)argc;
	(void)argv;
	/* FUZZ_LOG=1: say why each input is refused (when reproducing one). */
	verbose = getenv("FUZZ_LOG");
	log_threshold = verbose ? LOG_DEBUG : LOG_ERR;
	vm.vm_fd = vm.kvm_fd = -1;
	vm.pio.name = "pio";
	vm.mmio.name = "mmio";
	fuzz_region_init(&vm.mem.regions[0], 0, RAM0, 0, GUARD);
	fuzz_region_init(&vm.mem.regions[1], HIGH_GPA, HIGH_RAM, 1, GUARD);
	vm.mem.nr_regions = 2;
	vm.mem.ram_size = RAM0 + HIGH_RAM;
	img_fd = memfd_create("fuzz-disk", MFD_CLOEXEC);
	if (event_loop_init(&vm.loop) < 0 || img_fd < 0 ||
	    socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	blk = fuzz_blk_create(&vm, img_fd, IMG_SIZE, "fuzz-serial");
	net = fuzz_net_create(&vm, sv[0]);
	tap_peer = sv[1];
	if (virtio_rng_create(&vm) < 0)
		abort();
	rng = vm.virtio[vm.nr_virtio - 1];
	return 0;
}

/* ---- laying out the rings ---- */

static bool poking = true;        /* false: only find where the layout ends */

static void poke(uint64_t gpa, const void *src, size_t len)
{
	void *p = poking ? guest_mem_ptr(&vm.mem, gpa, len) : NULL;

	if (p)
		memcpy(p, src, len);
}

static void poke16(uint64_t gpa, uint16_t v)
{
	poke(gpa, &v, 2);
}

static uint64_t compact_addr(uint8_t sel, uint8_t off)
{
	static const uint64_t base[] = { A_DATA, A_DESC, A_IND0, A_IND1, A_USED, A_AVAIL };
	uint64_t o = ((uint64_t)(sel & 31) << 8 | off) << 2, o2 = (uint64_t)off << 2;

	if (sel >> 5 < 6)
		return base[sel >> 5] + o;
	if (sel >> 5 == 6)
		return RAM0 - o;        /* runs off the end of low RAM */
	switch (sel & 7) {
	case 0:  return HIGH_GPA + o2;
	case 1:  return HIGH_GPA + HIGH_RAM - o2;
	case 2:  return HIGH_GPA - o2;                  /* in the hole, running into RAM */
	case 3:  return RAM0 + o2;                      /* just past low RAM */
	case 4:  return 0 - o2 - 16;                    /* wraps past 2^64 */
	case 5:  return 1ULL << 63 | o2;
	case 6:  return o2;
	default: return o2 << 32;
	}
}

/* One descriptor from the input into d[16]. */
static void get_desc(struct input *in, bool raw, uint8_t d[16])
{
	uint64_t addr;
	uint32_t len;
	uint16_t v, flags, next;
	uint8_t sel, off, f;

	if (raw) {
		for (int i = 0; i < 16; i++)
			d[i] = get8(in);
		return;
	}
	sel = get8(in);
	off = get8(in);
	v = get16(in);
	f = get8(in);
	next = get8(in);
	addr = compact_addr(sel, off);
	/* Small lengths as they are; else 2^k - 1 or 2^k, up to 4 GiB - 1. */
	len = v & 0x8000 ? (0xffffffffU >> (v & 31)) + ((v >> 5) & 1) : v;
	flags = (uint16_t)((f & 7) | (f & 0xf8) << 8);
	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static void put_table(struct input *in, bool raw, uint64_t gpa)
{
	unsigned n = get8(in), fill, i;
	uint8_t d[16];

	for (i = 0; i < n; i++) {
		get_desc(in, raw, d);
		poke(gpa + 16ULL * i, d, 16);
	}
	fill = 4U * get8(in);
	if (!fill)
		return;
	get_desc(in, raw, d);
	for (unsigned k = 0; k < fill && i < TABLE_MAX; k++, i++) {
		uint16_t next = (uint16_t)(i + 1);

		memcpy(d + 14, &next, 2);
		poke(gpa + 16ULL * i, d, 16);
	}
}

/* ---- the bare walker ---- */

static bool in_ram(const void *base, size_t len)
{
	const uint8_t *p = base;

	for (unsigned i = 0; i < vm.mem.nr_regions; i++) {
		const struct mem_region *r = &vm.mem.regions[i];

		if (p >= r->hva && p < r->hva + r->size && len <= (size_t)(r->hva + r->size - p))
			return true;
	}
	return false;
}

/* What vq_pop() promises about a chain it returns. */
static void check_elem(const struct vq_elem *e)
{
	uint64_t out = 0, in = 0;

	if (e->n_out > VQ_MAX_SG || e->n_in > VQ_MAX_SG)
		abort();
	for (unsigned i = 0; i < e->n_out; i++) {
		if (!e->out[i].iov_len || !in_ram(e->out[i].iov_base, e->out[i].iov_len))
			abort();
		out += e->out[i].iov_len;
	}
	for (unsigned i = 0; i < e->n_in; i++) {
		if (!e->in[i].iov_len || !in_ram(e->in[i].iov_base, e->in[i].iov_len) ||
		    guest_mem_ptr(&vm.mem, e->in_gpa[i], e->in[i].iov_len) != e->in[i].iov_base)
			abort();
		in += e->in[i].iov_len;
	}
	if (out != e->out_len || in != e->in_len || out + in > 1ULL << 32)
		abort();
}

static void walk(uint16_t size, uint64_t desc, uint64_t avail, uint64_t used, uint8_t mode,
		 uint16_t start)
{
	static const uint8_t pattern[TOUCH_MAX] = { 0xa5 };
	struct virtqueue vq;
	unsigned i;
	int r = 0;

	vq_reset(&vq);
	vq.size = size;
	vq.desc_gpa = desc;
	vq.avail_gpa = avail;
	vq.used_gpa = used;
	vq.indirect = mode & 8;
	vq.event_idx = mode & 16;
	if (vq_validate(&vq, &vm.mem) < 0) {
		if (verbose)
			fprintf(stderr, "walker: rings refused\n");
		return;
	}
	vq.ready = true;
	vq.last_avail = vq.used_idx = vq.signalled_used = start;
	for (i = 0; i < 2U * size + 2 && vq_has_avail(&vq); i++) {
		uint32_t written;

		if ((r = vq_pop(&vq, &vm.mem, &elem)) <= 0)
			break;
		check_elem(&elem);
		if (i == 0 && (mode & 32)) {
			/* As blk's merge does: put back, take again. With the
			 * rings apart nothing was written in between: the same
			 * chain. (Else the pop's own avail_event store may have
			 * changed it, as a guest may: then anything goes.) */
			vq_unpop(&vq);
			r = vq_pop(&vq, &vm.mem, &elem2);
			if (!(mode >> 6) && (r != 1 || elem2.head != elem.head ||
					      elem2.n_in != elem.n_in || elem2.n_out != elem.n_out ||
					      elem2.in_len != elem.in_len || elem2.out_len != elem.out_len))
				abort();
			if (r != 1)
				break;
			check_elem(&elem2);
			elem = elem2;
		}
		/* A device reads the request and writes its answer. */
		iov_to_buf(elem.out, elem.n_out, elem.out_len > 16 ? 16 : 0, scratch, sizeof(scratch));
		for (unsigned k = 0; k < elem.n_out; k++)
			scratch[0] ^= ((volatile uint8_t *)elem.out[k].iov_base)[elem.out[k].iov_len - 1];
		written = (uint32_t)iov_from_buf(elem.in, elem.n_in, 0, pattern,
						 elem.in_len < TOUCH_MAX ? elem.in_len : TOUCH_MAX);
		vq_push(&vq, &vm.mem, &elem, written);
		vq_should_notify(&vq);
		if (verbose)
			fprintf(stderr, "walker: chain %u: head %u, %u out (%llu bytes), %u in (%llu bytes)\n",
				i, elem.head, elem.n_out, (unsigned long long)elem.out_len, elem.n_in,
				(unsigned long long)elem.in_len);
	}
	if (verbose)
		fprintf(stderr, "walker: %u chains, then %s\n", i, r < 0 ? "a malformed ring" : "none");
}

/* ---- the devices, through their registers ---- */

static void wr(struct virtio_device *d, uint32_t off, uint32_t v)
{
	io_bus_access(&vm.mmio, d->base + off, (uint8_t *)&v, 4, true);
}

/* What a driver reads before it sets a device up. */
static void dev_probe(struct virtio_device *d)
{
	static const uint32_t regs[] = { 0x000, 0x004, 0x008, 0x00c, 0x034, 0x044, 0x060, 0x070,
					 0x0fc };
	uint8_t buf[8];

	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
		io_bus_access(&vm.mmio, d->base + regs[i], buf, 4, false);
	for (uint32_t sel = 0; sel < 3; sel++) {
		wr(d, 0x014, sel);
		io_bus_access(&vm.mmio, d->base + 0x010, buf, 4, false);
	}
	for (uint32_t off = 0; off < d->ops->config_size + 8; off += 4)
		io_bus_access(&vm.mmio, d->base + 0x100 + off, buf, 4, false);
}

/* The input's own register accesses (any offset, length, value). */
static void dev_poke(struct virtio_device *d, struct input *in)
{
	unsigned n = get8(in);

	for (unsigned i = 0; i < n; i++) {
		uint8_t a = get8(in), b = get8(in);
		uint32_t v = get32(in);
		uint8_t buf[8] = { 0 };

		memcpy(buf, &v, 4);
		io_bus_access(&vm.mmio, d->base + ((uint64_t)a << 2 | ((b >> 3) & 3)), buf,
			      1U << (b & 3), b & 4);
	}
}

static bool dev_setup(struct virtio_device *d, unsigned q, uint32_t size, uint64_t desc,
		      uint64_t avail, uint64_t used, uint8_t mode)
{
	uint64_t feat = VIRTIO_F_VERSION_1 | (mode & 8 ? VIRTIO_F_RING_INDIRECT_DESC : 0) |
			(mode & 16 ? VIRTIO_F_RING_EVENT_IDX : 0);
	uint32_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	wr(d, REG_STATUS, 0);
	wr(d, REG_STATUS, st);
	wr(d, 0x024, 0);
	wr(d, 0x020, (uint32_t)feat);
	wr(d, 0x024, 1);
	wr(d, 0x020, (uint32_t)(feat >> 32));
	wr(d, REG_STATUS, st |= VIRTIO_STATUS_FEATURES_OK);
	wr(d, REG_QUEUE_SEL, q);
	wr(d, REG_QUEUE_NUM, size);
	wr(d, 0x080, (uint32_t)desc);
	wr(d, 0x084, (uint32_t)(desc >> 32));
	wr(d, 0x090, (uint32_t)avail);
	wr(d, 0x094, (uint32_t)(avail >> 32));
	wr(d, 0x0a0, (uint32_t)used);
	wr(d, 0x0a4, (uint32_t)(used >> 32));
	wr(d, REG_QUEUE_READY, 1);
	wr(d, REG_STATUS, st | VIRTIO_STATUS_DRIVER_OK);
	return virtio_live(d);
}

static void drain(int fd)
{
	while (recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT) >= 0)
		;
}

static struct virtio_device *device(unsigned dev)
{
	return dev == 1 ? blk->dev : dev == 2 ? net->dev : rng;
}

static void run_device(unsigned dev, uint8_t mode, uint16_t size, uint64_t desc,
		       uint64_t avail, uint64_t used, struct input *regs, const uint8_t *data,
		       size_t dlen)
{
	struct virtio_device *d = device(dev);
	bool rx = dev == 2 && (mode & 32);
	eventfd_t v;

	dev_probe(d);
	dev_setup(d, rx ? 0 : dev == 2 ? 1 : 0, size, desc, avail, used, mode);
	dev_poke(d, regs);
	if (!virtio_live(d))
		goto out;
	if (dev == 1) {
		blk->cfg.readonly = mode & 32;
		fuzz_blk_serve(blk, 1024);
	} else if (rx) {
		/* Two frames wait on the "tap"; each chain takes one. */
		send(tap_peer, data, dlen < 2048 ? dlen : 2048, MSG_DONTWAIT);
		send(tap_peer, data, dlen / 2 < 2048 ? dlen / 2 : 2048, MSG_DONTWAIT);
		d->ops->queue_notify(d, 0);     /* the driver's kick: buffers posted */
		net_on_tap(net, 0);
		drain(net->tap_fd);
	} else {
		d->ops->queue_notify(d, dev == 2 ? 1 : 0);
		if (dev == 2)
			drain(tap_peer);
	}
out:
	if (verbose) {
		uint16_t *u = guest_mem_ptr(&vm.mem, used + 2, 2);

		fprintf(stderr, "%s: used idx %d, status %#x\n", d->ops->name, u ? *u : -1, d->status);
	}
	wr(d, REG_STATUS, 0);
	for (unsigned q = 0; q < d->ops->num_queues; q++)
		eventfd_read(d->notify_fd[q], &v);
	eventfd_read(d->irq_fd, &v);
	if (dev == 1 && (ftruncate(img_fd, 0) < 0 || ftruncate(img_fd, (off_t)IMG_SIZE) < 0))
		abort();
}

/* The avail ring's entries (from slot `start` on) and the three tables. */
static void put_layout(struct input *in, bool raw, uint16_t qsize, uint16_t start,
		       uint64_t desc, uint64_t avail)
{
	unsigned k = get8(in);

	if (k > qsize)
		k = qsize;
	for (unsigned i = 0; i < k; i++) {
		uint16_t head = raw ? get16(in) : get8(in);

		poke16(avail + 4 + 2ULL * ((uint16_t)(start + i) % qsize), head);
	}
	put_table(in, raw, desc);
	put_table(in, raw, A_IND0);
	put_table(in, raw, A_IND1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size }, layout, regs = { NULL, 0 };
	uint8_t mode = get8(&in), code = get8(&in);
	unsigned dev = mode & 3;
	bool raw = mode & 4;
	uint16_t qsize, delta, start, aflags, used_event;
	uint64_t desc = A_DESC, avail = A_AVAIL, used = A_USED;
	size_t dlen;

	/* Guest RAM back to zeroes: every input starts from the same machine. */
	for (unsigned i = 0; i < vm.mem.nr_regions; i++) {
		struct mem_region *r = &vm.mem.regions[i];

		if (fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			      (off_t)r->size) < 0)
			abort();
		memset((void *)r->vmm_dirty, 0, (r->size / GUEST_PAGE_SIZE + 63) / 64 * 8);
	}
	qsize = code < 0xf0 ? (uint16_t)(1U << (code % 12)) : get16(&in);
	delta = get16(&in);
	start = dev ? 0 : get16(&in);   /* a device starts at 0 after its reset */
	aflags = get16(&in);
	used_event = get16(&in);
	switch (mode >> 6) {
	case 1:
		used = avail;
		break;
	case 2:
		used = desc;
		break;
	case 3: {
		uint64_t *a[] = { &desc, &avail, &used };

		for (int i = 0; i < 3; i++) {
			uint32_t x = get32(&in);

			*a[i] = x & 0x80000000U ? HIGH_GPA + (x & 0x7fffffffU) : x;
		}
		break;
	}
	}

	if (dev) {
		/* The register accesses, applied once the rings are laid out. */
		size_t r = 1 + 6 * (size_t)(in.n ? in.p[0] : 0);

		if (r > in.n)
			r = in.n;
		regs = (struct input){ in.p, r };
		in.p += r;
		in.n -= r;
	}

	/* The data first (found past the layout), then the layout over it. */
	layout = in;
	poking = false;
	put_layout(&in, raw, qsize ? qsize : 1, start, desc, avail);
	poking = true;
	dlen = in.n < RAM0 - A_DATA ? in.n : RAM0 - A_DATA;
	poke(A_DATA, in.p, dlen);
	put_layout(&layout, raw, qsize ? qsize : 1, start, desc, avail);
	poke16(avail, aflags);
	poke16(avail + 2, (uint16_t)(start + delta));
	poke16(avail + 4 + 2ULL * qsize, used_event);

	if (dev == 0)
		walk(qsize, desc, avail, used, mode, start);
	else
		run_device(dev, mode, qsize, desc, avail, used, &regs, in.p, dlen);
	return 0;
}
