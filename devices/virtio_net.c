// SPDX-License-Identifier: MIT
/*
 * RX: when the tap is readable, each frame goes into one receive chain.
 * When the guest has posted no buffers, we stop watching the tap (so the
 * loop does not spin) until the guest kicks the RX queue again; the tap
 * queues frames meanwhile. TX: every kick drains the TX ring into writev().
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <unistd.h>

#include "devices/virtio_mmio.h"
#include "devices/virtio_net.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define VIRTIO_ID_NET           1
#define VIRTIO_NET_F_CSUM       (1ULL << 0)
#define VIRTIO_NET_F_GUEST_CSUM (1ULL << 1)
#define VIRTIO_NET_F_MAC        (1ULL << 5)
#define VIRTIO_NET_F_GUEST_TSO4 (1ULL << 7)
#define VIRTIO_NET_F_GUEST_TSO6 (1ULL << 8)
#define VIRTIO_NET_F_GUEST_ECN  (1ULL << 9)
#define VIRTIO_NET_F_HOST_TSO4  (1ULL << 11)
#define VIRTIO_NET_F_HOST_TSO6  (1ULL << 12)
#define VIRTIO_NET_F_HOST_ECN   (1ULL << 13)
#define VIRTIO_NET_F_STATUS     (1ULL << 16)
#define VIRTIO_NET_S_LINK_UP    1

#define NET_RXQ                 0
#define NET_TXQ                 1
#define NET_QUEUE_SIZE          256
#define NET_HDR_LEN             12      /* struct virtio_net_hdr_v1 */
#define NET_TX_BUDGET           256     /* frames per kick before yielding the loop */

struct net_config_space {
	uint8_t mac[6];
	uint16_t status;
	uint16_t max_virtqueue_pairs;
	uint16_t mtu;
} __attribute__((packed));

struct net {
	struct virtio_device *dev;
	struct net_config cfg;
	char tap_name[IFNAMSIZ];
	char tap_shown[ESCAPED_SIZE(IFNAMSIZ)];  /* for messages: maybe the stream's */
	int tap_fd;
	bool released;          /* tap_fd is /dev/null: a migration's destination has the tap */
	bool rx_watched;
	struct net_config_space config;
	struct vq_elem elem;
};

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		   &tail) != 6)
		return -1;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return mac[0] & 1 ? -1 : 0;      /* a multicast address is no NIC's address */
}

int net_config_parse(char *arg, struct net_config *cfg)
{
	char *opt, *save = NULL;

	memset(cfg, 0, sizeof(*cfg));
	for (opt = strtok_r(arg, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
		if (!strncmp(opt, "tap=", 4) && opt[4] && strlen(opt + 4) < IFNAMSIZ) {
			cfg->tap = opt + 4;
		} else if (!strncmp(opt, "mac=", 4) && parse_mac(opt + 4, cfg->mac) == 0) {
			cfg->mac_set = true;
		} else {
			pr_err("--net: bad option '%s' (expected tap=NAME[,mac=52:54:00:12:34:56])", opt);
			return -1;
		}
	}
	if (!cfg->tap) {
		pr_err("--net: tap=NAME is required");
		return -1;
	}
	return 0;
}

static void net_watch_rx(struct net *n, bool on)
{
	if (on == n->rx_watched || n->tap_fd < 0)
		return;
	/* The fd stays registered; only its interest changes. */
	event_loop_mod(&n->dev->vm->loop, n->tap_fd, on ? EPOLLIN : 0);
	n->rx_watched = on;
}

/* Called with the transport lock held. */
static void net_rx(struct net *n)
{
	struct virtio_device *d = n->dev;
	struct virtqueue *vq = &d->vqs[NET_RXQ];
	bool pushed = false;

	while (virtio_live(d)) {
		uint16_t one = 1;
		ssize_t len;
		int r = vq_pop(vq, &d->vm->mem, &n->elem);

		if (r < 0) {
			virtio_needs_reset(d, "malformed receive chain");
			break;
		}
		if (r == 0) {           /* no buffers: wait for the guest's kick */
			net_watch_rx(n, false);
			break;
		}
		if (n->elem.in_len < NET_HDR_LEN) {
			vq_push(vq, &d->vm->mem, &n->elem, 0);
			pushed = true;
			continue;
		}
		len = readv(n->tap_fd, n->elem.in, (int)n->elem.n_in);
		if (len < 0) {
			vq_unpop(vq);
			if (errno != EAGAIN && errno != EINTR)
				pr_warn_ratelimited("virtio-net: read from %s: %s", n->tap_shown,
						    strerror(errno));
			break;
		}
		/* num_buffers: the tap leaves it alone; one buffer per frame. */
		iov_from_buf(n->elem.in, n->elem.n_in, 10, &one, 2);
		vq_push(vq, &d->vm->mem, &n->elem, (uint32_t)len);
		pushed = true;
	}
	if (pushed && vq_should_notify(vq))
		virtio_signal_used(d);
}

static void net_tx(struct net *n)
{
	struct virtio_device *d = n->dev;
	struct virtqueue *vq = &d->vqs[NET_TXQ];
	bool pushed = false;

	for (int budget = NET_TX_BUDGET; budget && virtio_live(d); budget--) {
		int r = vq_pop(vq, &d->vm->mem, &n->elem);

		if (r < 0) {
			virtio_needs_reset(d, "malformed transmit chain");
			break;
		}
		if (r == 0)
			break;
		if (n->elem.out_len >= NET_HDR_LEN && !n->elem.n_in &&
		    writev(n->tap_fd, n->elem.out, (int)n->elem.n_out) < 0 && errno != EAGAIN)
			pr_warn_ratelimited("virtio-net: write to %s: %s", n->tap_shown,
					    strerror(errno));
		vq_push(vq, &d->vm->mem, &n->elem, 0);
		pushed = true;
	}
	if (pushed && vq_should_notify(vq))
		virtio_signal_used(d);
	/* Budget spent with more waiting: come back on the next loop turn. */
	if (vq_has_avail(vq))
		eventfd_write(d->notify_fd[NET_TXQ], 1);
}

static void net_notify(struct virtio_device *d, unsigned q)
{
	struct net *n = d->priv;

	pthread_mutex_lock(&d->lock);
	if (q == NET_TXQ)
		net_tx(n);
	else if (q == NET_RXQ && virtio_live(d))
		net_watch_rx(n, true);  /* new buffers: take frames again */
	pthread_mutex_unlock(&d->lock);
}

static void net_on_tap(void *opaque, uint32_t events)
{
	struct net *n = opaque;

	(void)events;
	pthread_mutex_lock(&n->dev->lock);
	net_rx(n);
	pthread_mutex_unlock(&n->dev->lock);
}

static unsigned tap_offloads(uint64_t f)
{
	unsigned o = 0;

	if (f & VIRTIO_NET_F_GUEST_CSUM) {
		o |= TUN_F_CSUM;
		if (f & VIRTIO_NET_F_GUEST_TSO4)
			o |= TUN_F_TSO4;
		if (f & VIRTIO_NET_F_GUEST_TSO6)
			o |= TUN_F_TSO6;
		if (f & VIRTIO_NET_F_GUEST_ECN)
			o |= TUN_F_TSO_ECN;
	}
	return o;
}

static void net_activate(struct virtio_device *d)
{
	struct net *n = d->priv;

	/* What the tap may hand us is what the guest said it can take. */
	if (ioctl(n->tap_fd, TUNSETOFFLOAD, tap_offloads(d->driver_features)) < 0)
		pr_warn("virtio-net: TUNSETOFFLOAD on %s: %s", n->tap_shown, strerror(errno));
	net_watch_rx(n, true);
}

static void net_reset(struct virtio_device *d)
{
	struct net *n = d->priv;

	net_watch_rx(n, false);
	ioctl(n->tap_fd, TUNSETOFFLOAD, 0);
}

static void net_quiesce(struct virtio_device *d)
{
	pthread_mutex_lock(&d->lock);
	net_watch_rx(d->priv, false);
	pthread_mutex_unlock(&d->lock);
}

static void net_resume(struct virtio_device *d)
{
	pthread_mutex_lock(&d->lock);
	if (virtio_live(d))
		net_watch_rx(d->priv, true);
	pthread_mutex_unlock(&d->lock);
}

static void net_release(struct virtio_device *d)
{
	struct net *n = d->priv;

	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	pthread_mutex_lock(&d->lock);
	net_watch_rx(n, false);
	/* Closing our tap file detaches us, so the destination can attach.
	 * dup2 keeps the fd number valid for the event loop's bookkeeping. */
	if (null >= 0 && n->tap_fd >= 0) {
		dup3(null, n->tap_fd, O_CLOEXEC);
		n->released = true;
	}
	if (null >= 0)
		close(null);
	pthread_mutex_unlock(&d->lock);
}

static int tap_open(const struct net *n);

/* Main thread, before the guest runs: take the tap (over from the source,
 * or back from a destination that will not run the guest, at the fd
 * number release left). */
static int net_attach(struct virtio_device *d)
{
	struct net *n = d->priv;
	int fd;

	if (n->tap_fd >= 0 && !n->released)
		return 0;
	fd = tap_open(n);
	if (fd < 0)
		return -1;
	if (n->tap_fd >= 0) {
		event_loop_del(&d->vm->loop, n->tap_fd);
		if (dup3(fd, n->tap_fd, O_CLOEXEC) < 0) {
			pr_err("--net tap=%s: %s", n->tap_shown, strerror(errno));
			close(fd);
			return -1;
		}
		close(fd);
	} else {
		n->tap_fd = fd;
	}
	n->released = false;
	n->rx_watched = false;
	if (event_loop_add(&d->vm->loop, n->tap_fd, 0, net_on_tap, n) < 0)
		return -1;
	if (virtio_live(d) &&
	    ioctl(n->tap_fd, TUNSETOFFLOAD, tap_offloads(d->driver_features)) < 0)
		pr_warn("virtio-net: TUNSETOFFLOAD on %s: %s", n->tap_shown, strerror(errno));
	return 0;
}

static void net_save(struct virtio_device *d, struct state_writer *w)
{
	struct net *n = d->priv;

	state_put_bytes(w, "mac", n->config.mac, 6);
	state_put_str(w, "tap", n->tap_name);
}

/* The guest knows its MAC and has negotiated offloads: give it both back. */
static int net_load(struct virtio_device *d, const struct state_reader *r)
{
	struct net *n = d->priv;

	if (state_get_bytes(r, "mac", n->config.mac, 6) < 0)
		return -1;
	if (n->tap_fd >= 0 &&
	    ioctl(n->tap_fd, TUNSETOFFLOAD, tap_offloads(d->driver_features)) < 0)
		pr_warn("virtio-net: TUNSETOFFLOAD on %s: %s", n->tap_shown, strerror(errno));
	return 0;
}

static void net_config_read(struct virtio_device *d, uint32_t off, uint8_t *data, unsigned len)
{
	struct net *n = d->priv;

	memcpy(data, (uint8_t *)&n->config + off, len);
}

static void net_destroy(struct virtio_device *d)
{
	struct net *n = d->priv;

	if (!n)
		return;
	if (n->tap_fd >= 0)
		close(n->tap_fd);
	free(n);
}

static const struct virtio_device_ops net_ops = {
	.name = "virtio-net",
	.device_id = VIRTIO_ID_NET,
	.num_queues = 2,
	.queue_max = NET_QUEUE_SIZE,
	.features = VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS | VIRTIO_NET_F_CSUM |
		    VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6 |
		    VIRTIO_NET_F_GUEST_ECN | VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6 |
		    VIRTIO_NET_F_HOST_ECN,
	.config_size = sizeof(struct net_config_space),
	.config_read = net_config_read,
	.queue_notify = net_notify,
	.activate = net_activate,
	.reset = net_reset,
	.destroy = net_destroy,
	.quiesce = net_quiesce,
	.resume = net_resume,
	.release = net_release,
	.attach = net_attach,
	.state_version = 1,
	.save = net_save,
	.load = net_load,
};

/* A new fd attached to the tap (vnet headers on, no offloads yet), or -1. */
static int tap_open(const struct net *n)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
	int hdr = NET_HDR_LEN, fd;

	if (!if_nametoindex(n->tap_name)) {
		pr_err("--net tap=%s: no such interface (create it: ip tuntap add %s mode tap)",
		       n->tap_shown, n->tap_shown);
		return -1;
	}
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		pr_err("--net tap=%s: /dev/net/tun: %s", n->tap_shown, strerror(errno));
		return -1;
	}
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", n->tap_name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		pr_err("--net tap=%s: cannot attach (%s): is it a tap, free, and yours?",
		       n->tap_shown, strerror(errno));
		goto err;
	}
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 || ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
		pr_err("--net tap=%s: vnet header set-up: %s", n->tap_shown, strerror(errno));
		goto err;
	}
	return fd;
err:
	close(fd);
	return -1;
}

static void net_fill_config(struct net *n)
{
	if (n->cfg.mac_set) {
		memcpy(n->config.mac, n->cfg.mac, 6);
	} else {
		/* Locally administered, unicast, random. */
		if (getrandom(n->config.mac, 6, 0) != 6)
			memset(n->config.mac, 0x5a, 6);
		n->config.mac[0] = (uint8_t)((n->config.mac[0] & 0xfc) | 0x02);
	}
	n->config.status = VIRTIO_NET_S_LINK_UP;
	n->config.max_virtqueue_pairs = 1;
	n->config.mtu = 1500;
}

int virtio_net_create(struct vm *vm, const struct net_config *cfg)
{
	struct net *n = calloc(1, sizeof(*n));

	if (!n)
		return -1;
	n->cfg = *cfg;
	n->tap_fd = -1;
	snprintf(n->tap_name, sizeof(n->tap_name), "%s", cfg->tap);
	log_escape(n->tap_shown, sizeof(n->tap_shown), n->tap_name);
	n->cfg.tap = n->tap_name;
	/* An incoming migration attaches the tap only after GO: until then
	 * the source still has it (net_attach). */
	if (vm->cfg.defer_backends && !if_nametoindex(n->tap_name)) {
		/* Deferred, but a tap that does not exist here is known now. */
		pr_err("--net tap=%s: no such interface on this host", n->tap_shown);
		net_destroy(&(struct virtio_device){ .priv = n });
		return -1;
	}
	if (!vm->cfg.defer_backends && (n->tap_fd = tap_open(n)) < 0) {
		net_destroy(&(struct virtio_device){ .priv = n });
		return -1;
	}
	net_fill_config(n);
	n->dev = virtio_mmio_create(vm, &net_ops, n);
	if (!n->dev)
		return -1;
	/* Registered now (the loop is single-threaded later); interest comes at DRIVER_OK. */
	if (n->tap_fd >= 0 && event_loop_add(&vm->loop, n->tap_fd, 0, net_on_tap, n) < 0)
		return -1;
	return 0;
}
