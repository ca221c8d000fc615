// SPDX-License-Identifier: MIT
/*
 * Register file of a virtio-mmio v2 device. Accesses below the config
 * space must be aligned 32-bit; anything else reads 0 and is dropped, as
 * the spec allows. A guest cannot make the transport touch memory outside
 * RAM: queue rings are validated when QueueReady is written.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "devices/virtio_mmio.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define REG_MAGIC               0x000
#define REG_VERSION             0x004
#define REG_DEVICE_ID           0x008
#define REG_VENDOR_ID           0x00c
#define REG_DEVICE_FEATURES     0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES     0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL           0x030
#define REG_QUEUE_NUM_MAX       0x034
#define REG_QUEUE_NUM           0x038
#define REG_QUEUE_READY         0x044
#define REG_QUEUE_NOTIFY        0x050
#define REG_INTERRUPT_STATUS    0x060
#define REG_INTERRUPT_ACK       0x064
#define REG_STATUS              0x070
#define REG_QUEUE_DESC_LOW      0x080
#define REG_QUEUE_DESC_HIGH     0x084
#define REG_QUEUE_DRIVER_LOW    0x090
#define REG_QUEUE_DRIVER_HIGH   0x094
#define REG_QUEUE_DEVICE_LOW    0x0a0
#define REG_QUEUE_DEVICE_HIGH   0x0a4
#define REG_CONFIG_GENERATION   0x0fc
#define REG_CONFIG              0x100

#define VIRTIO_MMIO_MAGIC       0x74726976      /* "virt" */
#define VIRTIO_MMIO_VENDOR      0x4d564d4d      /* "MMVM" */
#define TRANSPORT_FEATURES (VIRTIO_F_VERSION_1 | VIRTIO_F_RING_INDIRECT_DESC | \
			    VIRTIO_F_RING_EVENT_IDX)

uint32_t virtio_mmio_irq(unsigned index)
{
	uint32_t irq = IRQ_VIRTIO_FIRST + index;

	return irq >= IRQ_RTC ? irq + 1 : irq;
}

static uint64_t offered_features(const struct virtio_device *d)
{
	return d->ops->features | TRANSPORT_FEATURES;
}

bool virtio_live(const struct virtio_device *d)
{
	return (d->status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(d->status & VIRTIO_STATUS_NEEDS_RESET) && !d->quiesced;
}

void virtio_signal_used(struct virtio_device *d)
{
	atomic_fetch_or(&d->isr, VIRTIO_ISR_USED);
	eventfd_write(d->irq_fd, 1);
}

void virtio_needs_reset(struct virtio_device *d, const char *why)
{
	pr_warn_ratelimited("%s: %s: device needs reset", d->ops->name, why);
	d->status |= VIRTIO_STATUS_NEEDS_RESET;
	d->config_generation++;
	atomic_fetch_or(&d->isr, VIRTIO_ISR_CONFIG);
	eventfd_write(d->irq_fd, 1);
}

static void virtio_reset(struct virtio_device *d)
{
	if (d->ops->reset)
		d->ops->reset(d);
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vq_reset(&d->vqs[q]);
	d->status = 0;
	d->driver_features = 0;
	d->dev_features_sel = d->drv_features_sel = d->queue_sel = 0;
	atomic_store(&d->isr, 0);
}

static struct virtqueue *selected_vq(struct virtio_device *d)
{
	return d->queue_sel < d->ops->num_queues ? &d->vqs[d->queue_sel] : NULL;
}

static uint32_t read_reg(struct virtio_device *d, uint32_t off)
{
	struct virtqueue *vq = selected_vq(d);
	uint64_t feat = offered_features(d);

	switch (off) {
	case REG_MAGIC:             return VIRTIO_MMIO_MAGIC;
	case REG_VERSION:           return 2;
	case REG_DEVICE_ID:         return d->ops->device_id;
	case REG_VENDOR_ID:         return VIRTIO_MMIO_VENDOR;
	case REG_DEVICE_FEATURES:
		return d->dev_features_sel == 0 ? (uint32_t)feat :
		       d->dev_features_sel == 1 ? (uint32_t)(feat >> 32) : 0;
	case REG_QUEUE_NUM_MAX:     return vq ? d->ops->queue_max : 0;
	case REG_QUEUE_READY:       return vq ? vq->ready : 0;
	case REG_INTERRUPT_STATUS:  return atomic_load(&d->isr);
	case REG_STATUS:            return d->status;
	case REG_CONFIG_GENERATION: return d->config_generation;
	default:                    return 0;
	}
}

static void set_queue_ready(struct virtio_device *d, struct virtqueue *vq, uint32_t v)
{
	if (!v) {
		vq->ready = false;
		return;
	}
	vq->event_idx = d->driver_features & VIRTIO_F_RING_EVENT_IDX;
	vq->indirect = d->driver_features & VIRTIO_F_RING_INDIRECT_DESC;
	if (vq_validate(vq, &d->vm->mem) < 0) {
		virtio_needs_reset(d, "queue set-up outside RAM, misaligned or bad size");
		return;
	}
	vq->ready = true;
}

static void set_features_ok(struct virtio_device *d, uint32_t v)
{
	/* Refuse what we did not offer, and legacy (pre-1.0) drivers. */
	if ((d->driver_features & ~offered_features(d)) ||
	    !(d->driver_features & VIRTIO_F_VERSION_1))
		v &= ~VIRTIO_STATUS_FEATURES_OK;
	d->status = v;
}

static void write_status(struct virtio_device *d, uint32_t v)
{
	bool was_live = d->status & VIRTIO_STATUS_DRIVER_OK;

	if (v == 0) {
		virtio_reset(d);
		return;
	}
	if ((v & VIRTIO_STATUS_FEATURES_OK) && !(d->status & VIRTIO_STATUS_FEATURES_OK)) {
		set_features_ok(d, v | (d->status & VIRTIO_STATUS_NEEDS_RESET));
		return;
	}
	d->status = v | (d->status & VIRTIO_STATUS_NEEDS_RESET);
	if (!was_live && (v & VIRTIO_STATUS_DRIVER_OK) && d->ops->activate)
		d->ops->activate(d);
}

/* Set the low or high half of a 64-bit value. */
static void set_half(uint64_t *x, bool high, uint32_t v)
{
	if (high)
		*x = (*x & 0xffffffffULL) | ((uint64_t)v << 32);
	else
		*x = (*x & ~0xffffffffULL) | v;
}

static void write_queue_reg(struct virtio_device *d, uint32_t off, uint32_t v)
{
	struct virtqueue *vq = selected_vq(d);

	/* Queue layout may change only while the queue is not ready. */
	if (!vq || (vq->ready && off != REG_QUEUE_READY))
		return;
	switch (off) {
	case REG_QUEUE_NUM:
		vq->size = (uint16_t)(v <= d->ops->queue_max ? v : 0);
		break;
	case REG_QUEUE_READY:
		set_queue_ready(d, vq, v);
		break;
	case REG_QUEUE_DESC_LOW:
	case REG_QUEUE_DESC_HIGH:
		set_half(&vq->desc_gpa, off == REG_QUEUE_DESC_HIGH, v);
		break;
	case REG_QUEUE_DRIVER_LOW:
	case REG_QUEUE_DRIVER_HIGH:
		set_half(&vq->avail_gpa, off == REG_QUEUE_DRIVER_HIGH, v);
		break;
	case REG_QUEUE_DEVICE_LOW:
	case REG_QUEUE_DEVICE_HIGH:
		set_half(&vq->used_gpa, off == REG_QUEUE_DEVICE_HIGH, v);
		break;
	}
}

static void write_reg(struct virtio_device *d, uint32_t off, uint32_t v)
{
	switch (off) {
	case REG_DEVICE_FEATURES_SEL:
		d->dev_features_sel = v;
		break;
	case REG_DRIVER_FEATURES:
		/* Features are fixed once FEATURES_OK is set. */
		if (d->status & VIRTIO_STATUS_FEATURES_OK || d->drv_features_sel > 1)
			break;
		set_half(&d->driver_features, d->drv_features_sel == 1, v);
		break;
	case REG_DRIVER_FEATURES_SEL:
		d->drv_features_sel = v;
		break;
	case REG_QUEUE_SEL:
		d->queue_sel = v;
		break;
	case REG_QUEUE_NOTIFY:
		/* Normally caught by the ioeventfd; route stragglers the same way. */
		if (v < d->ops->num_queues)
			eventfd_write(d->notify_fd[v], 1);
		break;
	case REG_INTERRUPT_ACK:
		atomic_fetch_and(&d->isr, ~v);
		break;
	case REG_STATUS:
		write_status(d, v);
		break;
	default:
		write_queue_reg(d, off, v);
		break;
	}
}

static void config_access(struct virtio_device *d, uint32_t off, uint8_t *data, unsigned len,
			  bool is_write)
{
	if (off > d->ops->config_size || len > d->ops->config_size - off) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	if (is_write && d->ops->config_write)
		d->ops->config_write(d, off, data, len);
	else if (!is_write && d->ops->config_read)
		d->ops->config_read(d, off, data, len);
	else if (!is_write)
		memset(data, 0, len);
}

static void virtio_mmio_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len,
			   bool is_write)
{
	struct virtio_device *d = opaque;
	uint32_t off = (uint32_t)offset, v = 0;

	pthread_mutex_lock(&d->lock);
	if (off >= REG_CONFIG) {
		config_access(d, off - REG_CONFIG, data, len, is_write);
	} else if (len != 4 || (off & 3)) {
		pr_info_ratelimited("%s: %u-byte access at register 0x%x ignored",
				    d->ops->name, len, off);
		if (!is_write)
			memset(data, 0, len);
	} else if (is_write) {
		memcpy(&v, data, 4);
		write_reg(d, off, v);
	} else {
		v = read_reg(d, off);
		memcpy(data, &v, 4);
	}
	pthread_mutex_unlock(&d->lock);
}

static void virtio_on_notify(void *opaque, uint32_t events)
{
	struct virtio_device *d = opaque;
	eventfd_t v;

	(void)events;
	for (unsigned q = 0; q < d->ops->num_queues; q++) {
		if (eventfd_read(d->notify_fd[q], &v) < 0)
			continue;
		d->ops->queue_notify(d, q);
	}
}

static int wire_kvm(struct virtio_device *d)
{
	struct kvm_irqfd irqfd = { .fd = (uint32_t)d->irq_fd, .gsi = d->irq };

	/* No VM (the device-level test harness): notifications arrive as MMIO
	 * writes and interrupts stay in irq_fd, where the harness reads them. */
	if (d->vm->vm_fd < 0)
		return 0;
	if (ioctl(d->vm->vm_fd, KVM_IRQFD, &irqfd) < 0) {
		pr_err("%s: KVM_IRQFD: %s", d->ops->name, strerror(errno));
		return -1;
	}
	for (unsigned q = 0; q < d->ops->num_queues; q++) {
		struct kvm_ioeventfd io = {
			.datamatch = q, .addr = d->base + REG_QUEUE_NOTIFY, .len = 4,
			.fd = d->notify_fd[q], .flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
		};

		/* Without it notifications still work, through an MMIO exit. */
		if (ioctl(d->vm->vm_fd, KVM_IOEVENTFD, &io) < 0)
			pr_warn("%s: KVM_IOEVENTFD: %s", d->ops->name, strerror(errno));
	}
	return 0;
}

static int open_fds(struct virtio_device *d)
{
	d->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->irq_fd < 0)
		return -1;
	for (unsigned q = 0; q < d->ops->num_queues; q++) {
		d->notify_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (d->notify_fd[q] < 0)
			return -1;
		if (d->ops->queue_notify &&
		    event_loop_add(&d->vm->loop, d->notify_fd[q], EPOLLIN, virtio_on_notify, d) < 0)
			return -1;
	}
	return 0;
}

struct virtio_device *virtio_mmio_create(struct vm *vm, const struct virtio_device_ops *ops,
					 void *priv)
{
	struct virtio_device *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->vm = vm;
	d->ops = ops;
	d->priv = priv;
	d->index = vm->nr_virtio;
	d->base = LAYOUT_VIRTIO_MMIO + LAYOUT_VIRTIO_STRIDE * d->index;
	d->irq = virtio_mmio_irq(d->index);
	d->irq_fd = -1;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		d->notify_fd[q] = -1;
	pthread_mutex_init(&d->lock, NULL);
	if (vm->nr_virtio >= VM_MAX_VIRTIO || ops->num_queues > VIRTIO_MAX_QUEUES ||
	    ops->queue_max > VQ_MAX_SIZE) {
		pr_err("%s: too many virtio devices (at most %d)", ops->name, VM_MAX_VIRTIO);
		goto err;
	}
	if (open_fds(d) < 0 || wire_kvm(d) < 0 ||
	    io_bus_register(&vm->mmio, d->base, VIRTIO_MMIO_SIZE, virtio_mmio_io, d) < 0) {
		pr_err("%s: cannot set up the virtio-mmio transport", ops->name);
		goto err;
	}
	vm->virtio[vm->nr_virtio++] = d;
	return d;
err:
	virtio_mmio_destroy(d);
	return NULL;
}

void virtio_mmio_destroy(struct virtio_device *d)
{
	if (!d)
		return;
	if (d->ops->destroy)
		d->ops->destroy(d);
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		if (d->notify_fd[q] >= 0)
			close(d->notify_fd[q]);
	if (d->irq_fd >= 0)
		close(d->irq_fd);
	pthread_mutex_destroy(&d->lock);
	free(d);
}
