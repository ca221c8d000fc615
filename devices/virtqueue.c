// SPDX-License-Identifier: MIT
/*
 * The guest owns the rings and may change them under us at any time, so
 * every field is read once into a local, checked, then used. Indices are
 * free-running u16s; the ring slot is idx & (size - 1).
 */
#include <string.h>

#include "devices/virtqueue.h"

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

#define VQ_MAX_INDIRECT VQ_MAX_SIZE
#define VQ_MAX_CHAIN_BYTES (1ULL << 32)

static uint16_t load16(const uint8_t *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}

static void store16(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE);
}

void vq_reset(struct virtqueue *vq)
{
	memset(vq, 0, sizeof(*vq));
}

int vq_validate(struct virtqueue *vq, struct guest_mem *mem)
{
	uint64_t n = vq->size;

	if (!n || n > VQ_MAX_SIZE || (n & (n - 1)))
		return -1;
	if ((vq->desc_gpa & 15) || (vq->avail_gpa & 1) || (vq->used_gpa & 3))
		return -1;
	vq->desc = guest_mem_ptr(mem, vq->desc_gpa, 16 * n);
	vq->avail = guest_mem_ptr(mem, vq->avail_gpa, 6 + 2 * n);
	vq->used = guest_mem_ptr(mem, vq->used_gpa, 6 + 8 * n);
	if (!vq->desc || !vq->avail || !vq->used)
		return -1;
	return 0;
}

bool vq_has_avail(const struct virtqueue *vq)
{
	return vq->ready && load16(vq->avail + 2) != vq->last_avail;
}

static int elem_add(struct vq_elem *e, struct guest_mem *mem, const struct vring_desc *d)
{
	void *p;

	if (d->len == 0)
		return 0;       /* allowed and meaningless */
	p = guest_mem_ptr(mem, d->addr, d->len);
	if (!p)
		return -1;
	if (d->flags & VRING_DESC_F_WRITE) {
		if (e->n_in == VQ_MAX_SG)
			return -1;
		e->in_gpa[e->n_in] = d->addr;
		e->in[e->n_in++] = (struct iovec){ p, d->len };
		e->in_len += d->len;
	} else {
		/* Readable after writable is forbidden by the spec. */
		if (e->n_in || e->n_out == VQ_MAX_SG)
			return -1;
		e->out[e->n_out++] = (struct iovec){ p, d->len };
		e->out_len += d->len;
	}
	return e->in_len + e->out_len > VQ_MAX_CHAIN_BYTES ? -1 : 0;
}

/* Walk a table of `count` descriptors from index `i`; at most `count` hops. */
static int walk_table(struct vq_elem *e, struct guest_mem *mem, const uint8_t *table,
		      uint32_t count, uint16_t i, bool allow_indirect, bool *indirect_seen)
{
	for (uint32_t hops = 0; hops < count; hops++) {
		struct vring_desc d;

		if (i >= count)
			return -1;
		memcpy(&d, table + 16 * (size_t)i, sizeof(d));
		if (d.flags & VRING_DESC_F_INDIRECT) {
			const uint8_t *ind;

			/* Only from the main table, once, as the chain's only element. */
			if (!allow_indirect || *indirect_seen || (d.flags & VRING_DESC_F_NEXT) ||
			    e->n_in || e->n_out || d.len % 16 || !d.len ||
			    d.len / 16 > VQ_MAX_INDIRECT)
				return -1;
			ind = guest_mem_ptr(mem, d.addr, d.len);
			if (!ind)
				return -1;
			*indirect_seen = true;
			return walk_table(e, mem, ind, d.len / 16, 0, false, indirect_seen);
		}
		if (elem_add(e, mem, &d) < 0)
			return -1;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		i = d.next;
	}
	return -1;      /* more hops than descriptors: a loop */
}

int vq_pop(struct virtqueue *vq, struct guest_mem *mem, struct vq_elem *e)
{
	uint16_t avail_idx, head;
	bool indirect_seen = false;

	if (!vq->ready)
		return 0;
	avail_idx = load16(vq->avail + 2);
	if (avail_idx == vq->last_avail)
		return 0;
	if ((uint16_t)(avail_idx - vq->last_avail) > vq->size)
		return -1;
	head = load16(vq->avail + 4 + 2 * (vq->last_avail & (vq->size - 1)));
	e->head = head;
	e->n_in = e->n_out = 0;
	e->in_len = e->out_len = 0;
	if (walk_table(e, mem, vq->desc, vq->size, head, vq->indirect, &indirect_seen) < 0)
		return -1;
	vq->last_avail++;
	if (vq->event_idx) {    /* avail_event: tell the driver when to kick next */
		store16(vq->used + 4 + 8 * (size_t)vq->size, vq->last_avail);
		guest_mem_mark_dirty(mem, vq->used_gpa + 4 + 8 * (uint64_t)vq->size, 2);
		/* The next pop's read of avail->idx must not pass this store:
		 * else the driver may read the old avail_event, skip its kick,
		 * and the device sees an empty ring and sleeps (lost wakeup). */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	}
	return 1;
}

void vq_unpop(struct virtqueue *vq)
{
	vq->last_avail--;
}

void vq_push(struct virtqueue *vq, struct guest_mem *mem, const struct vq_elem *e,
	     uint32_t written)
{
	uint8_t *slot = vq->used + 4 + 8 * (size_t)(vq->used_idx & (vq->size - 1));
	uint32_t id = e->head, left = written;

	/* Data pages first: dirty after the device's writes, before the guest sees them. */
	for (unsigned i = 0; i < e->n_in && left; i++) {
		uint32_t n = left < e->in[i].iov_len ? left : (uint32_t)e->in[i].iov_len;

		guest_mem_mark_dirty(mem, e->in_gpa[i], n);
		left -= n;
	}
	memcpy(slot, &id, 4);
	memcpy(slot + 4, &written, 4);
	guest_mem_mark_dirty(mem, vq->used_gpa + (uint64_t)(slot - vq->used), 8);
	vq->used_idx++;
	store16(vq->used + 2, vq->used_idx);
	guest_mem_mark_dirty(mem, vq->used_gpa + 2, 2);
}

bool vq_should_notify(struct virtqueue *vq)
{
	uint16_t old = vq->signalled_used, new = vq->used_idx, event;
	bool valid = vq->signalled_valid;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);       /* used idx before reading flags/event */
	vq->signalled_used = new;
	vq->signalled_valid = true;
	if (!vq->event_idx)
		return !(load16(vq->avail) & VRING_AVAIL_F_NO_INTERRUPT);
	if (!valid)
		return true;
	event = load16(vq->avail + 4 + 2 * (size_t)vq->size);
	return (uint16_t)(new - event - 1) < (uint16_t)(new - old);
}

/* Copy between a flat buffer and iovecs, starting `skip` bytes into them. */
static size_t iov_copy(const struct iovec *iov, unsigned n, size_t skip, uint8_t *buf,
		       size_t len, bool to_buf)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t seg = iov[i].iov_len, take;
		uint8_t *p = iov[i].iov_base;

		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		take = seg - skip < len - done ? seg - skip : len - done;
		if (to_buf)
			memcpy(buf + done, p + skip, take);
		else
			memcpy(p + skip, buf + done, take);
		done += take;
		skip = 0;
	}
	return done;
}

size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len)
{
	return iov_copy(iov, n, skip, buf, len, true);
}

size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t skip, const void *buf,
		    size_t len)
{
	return iov_copy(iov, n, skip, (uint8_t *)buf, len, false);
}
