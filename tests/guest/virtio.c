// SPDX-License-Identifier: MIT
/*
 * virtio-mmio discovery and transport, polled, at CPL3.
 *
 * Devices are found by probing windows: minivmm puts them at 0xD0000000 +
 * 0x1000 * i with no gaps (disks, then NICs, then rng), QEMU's microvm has
 * 24 transports at 0xFEB00000 + 0x200 * i, each present whether a device
 * is plugged or not. A window is a device if its magic is "virt", its
 * version 2 and its device id not 0; legacy (version 1) devices are listed
 * but left alone. When the first window of a layout is not a transport,
 * the layout is skipped: a guest without devices spends two MMIO reads.
 *
 * Rings and buffers live in a DMA pool the BSP takes from its own RAM at
 * boot, right after the image and before the workload area (so `fill all`
 * never touches them), only when there are devices.
 */
#include "virtio.h"

#define REG_MAGIC               0x000
#define REG_VERSION             0x004
#define REG_DEVICE_ID           0x008
#define REG_DEVICE_FEATURES     0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES     0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL           0x030
#define REG_QUEUE_NUM_MAX       0x034
#define REG_QUEUE_NUM           0x038
#define REG_QUEUE_READY         0x044
#define REG_QUEUE_NOTIFY        0x050
#define REG_STATUS              0x070
#define REG_QUEUE_DESC          0x080
#define REG_QUEUE_DRIVER        0x090
#define REG_QUEUE_DEVICE        0x0a0
#define REG_CONFIG_GEN          0x0fc
#define REG_CONFIG              0x100

#define MMIO_MAGIC              0x74726976      /* "virt" */
#define STATUS_ACK              1
#define STATUS_DRIVER           2
#define STATUS_DRIVER_OK        4
#define STATUS_FEATURES_OK      8
#define STATUS_FAILED           0x80

#define POOL_MISC               (256 * 1024ULL)
#define POOL_PER_DEV            (64 * 1024ULL)  /* rings of two queues of 256 */
#define POOL_PER_NIC            (2 * MiB)       /* 2 KiB buffers: 256 RX + 256 TX */
#define POOL_RNG                (64 * 1024ULL)
#define ARENA_MAX               (16 * MiB)      /* blk data buffers */

static const struct {
	u64 base, stride;
	unsigned n;
} layouts[] = {
	{ 0xd0000000, 0x1000, 18 },     /* minivmm */
	{ 0xfeb00000, 0x200, 24 },      /* QEMU microvm */
};

static struct vdev vdevs[MAX_VDEVS];
static unsigned nvdevs;
static u64 pool_next, pool_end;
u8 *blk_arena;
u64 blk_arena_bytes;

static u32 crc_table[8][256];

/* ---- registers ---- */

static u32 rd(const struct vdev *d, unsigned off)
{
	return *(volatile u32 *)phys(d->base + off);
}

static void wr(const struct vdev *d, unsigned off, u32 v)
{
	*(volatile u32 *)phys(d->base + off) = v;
}

static void wr64(const struct vdev *d, unsigned off, u64 v)
{
	wr(d, off, (u32)v);
	wr(d, off + 4, (u32)(v >> 32));
}

u32 vdev_cfg32(struct vdev *d, unsigned off)
{
	u32 gen, v;

	do {
		gen = rd(d, REG_CONFIG_GEN);
		v = rd(d, REG_CONFIG + off);
	} while (gen != rd(d, REG_CONFIG_GEN));
	return v;
}

u8 vdev_cfg8(struct vdev *d, unsigned off)
{
	return *(volatile u8 *)phys(d->base + REG_CONFIG + off);
}

/* ---- DMA pool ---- */

/* Page-aligned, not zeroed: first touches are costly (shadow paging), and
 * buffers need none at boot. */
void *dma_alloc_raw(u64 bytes)
{
	u64 pa = pool_next;

	bytes = ALIGN_UP(bytes, PAGE_SIZE);
	if (pool_end - pool_next < bytes)
		return NULL;
	pool_next += bytes;
	return phys(pa);
}

void *dma_alloc(u64 bytes)
{
	void *p = dma_alloc_raw(bytes);

	if (p)
		memset(p, 0, bytes);
	return p;
}

u64 dma_free_bytes(void)
{
	return pool_end - pool_next;
}

/* Takes `bytes` from the RAM region holding the end of the image. */
static bool reserve_pool(struct mem_region *ram, unsigned nram, u64 bytes)
{
	u64 start = ALIGN_UP((u64)(uintptr_t)__image_end, PAGE_SIZE);
	unsigned i;

	for (i = 0; i < nram; i++) {
		struct mem_region *r = &ram[i];
		u64 end = r->base + r->size;

		if (r->base > start || end < start + bytes + 16 * MiB)
			continue;
		/* Below `start` there is only the image and low RAM: work.c
		 * uses neither, so the region simply starts after the pool. */
		r->base = start + bytes;
		r->size = end - r->base;
		pool_next = start;
		pool_end = start + bytes;
		return true;
	}
	return false;
}

/* ---- discovery ---- */

static void probe(void)
{
	unsigned l, i;

	for (l = 0; l < ARRAY_SIZE(layouts); l++) {
		for (i = 0; i < layouts[l].n && nvdevs < MAX_VDEVS; i++) {
			struct vdev d = { .base = layouts[l].base + layouts[l].stride * i };

			if (rd(&d, REG_MAGIC) != MMIO_MAGIC)
				break;
			d.id = rd(&d, REG_DEVICE_ID);
			if (!d.id)
				continue;
			d.ok = rd(&d, REG_VERSION) == 2;        /* else legacy: listed only */
			d.index = nvdevs;
			vdevs[nvdevs++] = d;
		}
	}
}

static unsigned count(u32 id)
{
	unsigned i, n = 0;

	for (i = 0; i < nvdevs; i++)
		n += vdevs[i].id == id;
	return n;
}

struct vdev *vdev_find(u32 id, unsigned unit)
{
	unsigned i;

	for (i = 0; i < nvdevs; i++)
		if (vdevs[i].id == id && vdevs[i].unit == unit)
			return &vdevs[i];
	return NULL;
}

static void crc_init(void)
{
	unsigned i, k;

	for (i = 0; i < 256; i++) {
		u32 c = i;

		for (k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320 ^ (c >> 1) : c >> 1;
		crc_table[0][i] = c;
	}
	for (i = 0; i < 256; i++)
		for (k = 1; k < 8; k++)
			crc_table[k][i] = crc_table[0][crc_table[k - 1][i] & 0xff] ^
					  (crc_table[k - 1][i] >> 8);
}

/*
 * Called by the BSP before work_init(): finds the devices, takes the DMA
 * pool out of `ram` and starts a driver on every modern device.
 */
void virtio_setup(struct mem_region *ram, unsigned nram, const char *cmdline)
{
	u64 total = 0, pool, arena;
	unsigned i, nblk, nnet;

	probe();
	if (!nvdevs)
		return;
	crc_init();
	for (i = 0; i < nram; i++)
		total += ram[i].size;
	nblk = count(VIRTIO_ID_BLK);
	nnet = count(VIRTIO_ID_NET);
	arena = total / 8 < ARENA_MAX ? (total / 8) & ~(MiB - 1) : ARENA_MAX;
	if (arena < MiB)
		arena = MiB;
	pool = POOL_MISC + nvdevs * POOL_PER_DEV + nnet * POOL_PER_NIC +
	       (count(VIRTIO_ID_RNG) ? POOL_RNG : 0) + (nblk ? arena : 0);
	if (!reserve_pool(ram, nram, pool)) {
		for (i = 0; i < nvdevs; i++)
			vdevs[i].ok = false;
		return;
	}
	if (nblk) {
		blk_arena = dma_alloc_raw(arena);
		blk_arena_bytes = arena;
	}
	for (i = 0; i < nvdevs; i++) {
		struct vdev *d = &vdevs[i];
		unsigned u = 0, j;

		for (j = 0; j < i; j++)
			u += vdevs[j].id == d->id;
		d->unit = u;
		if (!d->ok)
			continue;
		if (d->id == VIRTIO_ID_BLK)
			blk_init(d);
		else if (d->id == VIRTIO_ID_NET)
			net_init(d, cmdline);
		else if (d->id == VIRTIO_ID_RNG)
			rng_init(d);
		else
			d->ok = false;
	}
}

/* ---- transport ---- */

/* Reset, acknowledge, negotiate `want` & offered. 0, or -1 (device FAILED). */
int vdev_begin(struct vdev *d, u64 want)
{
	u64 offered;

	wr(d, REG_STATUS, 0);
	while (rd(d, REG_STATUS))
		cpu_relax();
	wr(d, REG_STATUS, STATUS_ACK);
	wr(d, REG_STATUS, STATUS_ACK | STATUS_DRIVER);
	wr(d, REG_DEVICE_FEATURES_SEL, 0);
	offered = rd(d, REG_DEVICE_FEATURES);
	wr(d, REG_DEVICE_FEATURES_SEL, 1);
	offered |= (u64)rd(d, REG_DEVICE_FEATURES) << 32;
	d->features = offered & (want | VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX);
	if (!(d->features & VIRTIO_F_VERSION_1))
		goto fail;
	wr(d, REG_DRIVER_FEATURES_SEL, 0);
	wr(d, REG_DRIVER_FEATURES, (u32)d->features);
	wr(d, REG_DRIVER_FEATURES_SEL, 1);
	wr(d, REG_DRIVER_FEATURES, (u32)(d->features >> 32));
	wr(d, REG_STATUS, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK);
	if (!(rd(d, REG_STATUS) & STATUS_FEATURES_OK))
		goto fail;
	return 0;
fail:
	wr(d, REG_STATUS, STATUS_ACK | STATUS_DRIVER | STATUS_FAILED);
	d->ok = false;
	return -1;
}

void vdev_driver_ok(struct vdev *d)
{
	wr(d, REG_STATUS, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
}

/* Queue `index` with at most `max` entries (a power of two). */
int vq_setup(struct vq *q, struct vdev *d, unsigned index, unsigned max)
{
	unsigned size;

	memset(q, 0, sizeof(*q));
	wr(d, REG_QUEUE_SEL, index);
	size = rd(d, REG_QUEUE_NUM_MAX);
	if (rd(d, REG_QUEUE_READY) || !size)
		return -1;
	if (size > max)
		size = max;
	while (size & (size - 1))
		size &= size - 1;
	q->dev = d;
	q->index = index;
	q->size = (u16)size;
	q->event_idx = d->features & VIRTIO_F_EVENT_IDX;
	q->desc = dma_alloc(16 * size);
	q->avail = dma_alloc(6 + 2 * size);
	q->used = dma_alloc(6 + 8 * size);
	if (!q->desc || !q->avail || !q->used)
		return -1;
	/* No interrupts, ever: the flag without EVENT_IDX, else used_event
	 * kept half the index space ahead (see vq_used). */
	q->avail[0] = q->event_idx ? 0 : 1;
	q->avail[2 + size] = 0x7fff;
	wr(d, REG_QUEUE_NUM, size);
	wr64(d, REG_QUEUE_DESC, (u64)(uintptr_t)q->desc);
	wr64(d, REG_QUEUE_DRIVER, (u64)(uintptr_t)q->avail);
	wr64(d, REG_QUEUE_DEVICE, (u64)(uintptr_t)q->used);
	wr(d, REG_QUEUE_READY, 1);
	return 0;
}

/* Puts chain `head` in the next avail slot; the device sees it at vq_publish. */
void vq_add(struct vq *q, u16 head)
{
	q->avail[2 + (q->avail_idx & (q->size - 1))] = head;
	q->avail_idx++;
}

void vq_kick(struct vq *q)
{
	wr(q->dev, REG_QUEUE_NOTIFY, q->index);
	q->kicks++;
}

/* Makes added chains visible; kicks if the device asked to be told. */
void vq_publish(struct vq *q)
{
	u16 old = q->kick_idx, new = q->avail_idx;
	bool kick;

	if (old == new)
		return;
	__atomic_store_n(&q->avail[1], new, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);        /* idx store before event load */
	if (q->event_idx) {
		u16 ev = *(volatile u16 *)(q->used + 4 + 8 * q->size);

		kick = (u16)(new - ev - 1) < (u16)(new - old);
	} else {
		kick = !(*(volatile u16 *)q->used & 1);  /* VRING_USED_F_NO_NOTIFY */
	}
	q->kick_idx = new;
	if (kick)
		vq_kick(q);
}

bool vq_used(struct vq *q, u32 *id, u32 *len)
{
	u16 idx = __atomic_load_n((volatile u16 *)(q->used + 2), __ATOMIC_ACQUIRE);
	const volatile u8 *e;

	if (idx == q->last_used)
		return false;
	e = q->used + 4 + 8 * (q->last_used & (q->size - 1));
	*id = *(const volatile u32 *)e;
	*len = *(const volatile u32 *)(e + 4);
	q->last_used++;
	q->avail[2 + q->size] = (u16)(q->last_used + 0x7fff);
	return true;
}

/* ---- helpers ---- */

u32 crc32_update(u32 crc, const void *buf, size_t len)
{
	const u8 *p = buf;
	u32 c = ~crc;

	for (; len >= 8; len -= 8, p += 8) {
		u32 a, b;

		memcpy(&a, p, 4);
		memcpy(&b, p + 4, 4);
		a ^= c;
		c = crc_table[7][a & 0xff] ^ crc_table[6][(a >> 8) & 0xff] ^
		    crc_table[5][(a >> 16) & 0xff] ^ crc_table[4][a >> 24] ^
		    crc_table[3][b & 0xff] ^ crc_table[2][(b >> 8) & 0xff] ^
		    crc_table[1][(b >> 16) & 0xff] ^ crc_table[0][b >> 24];
	}
	while (len--)
		c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

const char *hex32(char buf[9], u32 v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 4)
		buf[i] = "0123456789abcdef"[v & 15];
	buf[8] = '\0';
	return buf;
}

/* The next token as a number (K/M/G suffixes allowed). */
bool arg_u64(char **p, u64 *v)
{
	const char *t = next_token(p);

	return t && parse_size(t, v);
}

u64 rate_mbps(u64 bytes, u64 ns)
{
	return ns ? bytes * 1000 / ns : 0;
}

static const char *type_name(u32 id)
{
	switch (id) {
	case VIRTIO_ID_BLK: return "blk";
	case VIRTIO_ID_NET: return "net";
	case VIRTIO_ID_RNG: return "rng";
	default:            return "other";
	}
}

static void cmd_devices(void)
{
	unsigned i;

	for (i = 0; i < nvdevs; i++) {
		const struct vdev *d = &vdevs[i];

		out_line("DEV i=%u type=%s unit=%u id=%u base=0x%llx ok=%u", d->index,
			 type_name(d->id), d->unit, d->id, d->base, d->ok);
	}
	out_line("DEVICES n=%u", nvdevs);
}

/* Console commands of the drivers; false if `cmd` is none of them. */
bool virtio_command(const char *cmd, char *args)
{
	if (!strcmp(cmd, "devices"))
		cmd_devices();
	else if (!strcmp(cmd, "blk"))
		blk_command(args);
	else if (!strcmp(cmd, "net"))
		net_command(args);
	else if (!strcmp(cmd, "rng"))
		rng_command(args);
	else
		return false;
	return true;
}

/* Background work of the drivers (the network); returns how long the
 * caller may wait before calling again. */
u64 virtio_poll(void)
{
	return count(VIRTIO_ID_NET) ? net_poll() : ~0ULL;
}
