/* SPDX-License-Identifier: MIT */
/*
 * Polling virtio-mmio (version 2 only) drivers of the test guest: the
 * transport and split virtqueues (virtio.c), and the blk, net and rng
 * drivers on top. No interrupts: drivers poll the used ring, ask the
 * device not to interrupt (used_event kept far ahead) and kick only when
 * the device's avail_event says it is waiting (VIRTIO_F_EVENT_IDX).
 */
#ifndef GUEST_VIRTIO_H
#define GUEST_VIRTIO_H

#include "guest.h"

#define VIRTIO_ID_NET           1
#define VIRTIO_ID_BLK           2
#define VIRTIO_ID_RNG           4

#define VIRTIO_F_EVENT_IDX      (1ULL << 29)
#define VIRTIO_F_VERSION_1      (1ULL << 32)

#define VRING_DESC_F_NEXT       1
#define VRING_DESC_F_WRITE      2

#define MAX_VDEVS               24
#define VQ_SIZE_MAX             256
#define STALL_NS                (2 * NSEC_PER_MSEC)     /* no progress: kick anyway */

struct vdev {
	u64 base;
	u32 id;
	unsigned index;         /* order found, by address */
	unsigned unit;          /* index among devices of the same type */
	u64 features;           /* negotiated */
	bool ok;                /* driver initialised it */
};

struct vring_desc {
	u64 addr;
	u32 len;
	u16 flags;
	u16 next;
};

struct vq {
	struct vdev *dev;
	unsigned index;
	u16 size;
	bool event_idx;
	struct vring_desc *desc;
	volatile u16 *avail;    /* flags, idx, ring[size], used_event */
	volatile u8 *used;      /* flags, idx, ring[size] of {id, len}, avail_event */
	u16 avail_idx;          /* next avail index (ours) */
	u16 kick_idx;           /* avail index the device was last told about */
	u16 last_used;          /* next used index to consume */
	u64 kicks, stalls;
};

/* virtio.c: discovery, memory, transport */
void virtio_setup(struct mem_region *ram, unsigned nram, const char *cmdline);
void *dma_alloc(u64 bytes);
void *dma_alloc_raw(u64 bytes);
u64 dma_free_bytes(void);
struct vdev *vdev_find(u32 id, unsigned unit);
int vdev_begin(struct vdev *d, u64 want);
int vq_setup(struct vq *q, struct vdev *d, unsigned index, unsigned max);
void vdev_driver_ok(struct vdev *d);
u32 vdev_cfg32(struct vdev *d, unsigned off);
u8 vdev_cfg8(struct vdev *d, unsigned off);
void vq_add(struct vq *q, u16 head);
void vq_publish(struct vq *q);
void vq_kick(struct vq *q);
bool vq_used(struct vq *q, u32 *id, u32 *len);
bool virtio_command(const char *cmd, char *args);
u64 virtio_poll(void);

extern u8 *blk_arena;            /* shared data buffers of the blk driver */
extern u64 blk_arena_bytes;

/* Helpers shared by the drivers */
u32 crc32_update(u32 crc, const void *buf, size_t len);
const char *hex32(char buf[9], u32 v);
bool arg_u64(char **p, u64 *v);
u64 rate_mbps(u64 bytes, u64 ns);

/* blk.c, net.c, rng.c */
void blk_init(struct vdev *d);
void blk_command(char *args);
void net_init(struct vdev *d, const char *cmdline);
void net_command(char *args);
u64 net_poll(void);
void rng_init(struct vdev *d);
void rng_command(char *args);

#endif /* GUEST_VIRTIO_H */
