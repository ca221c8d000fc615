// SPDX-License-Identifier: MIT
/*
 * Polling virtio-net driver and a tiny IPv4 stack: ARP (answers and
 * learns), ICMP echo reply, UDP echo on port 7 and a UDP sink on port 9
 * that counts bytes and keeps a running CRC32 of the payloads. `net send`
 * streams a known pattern to a host UDP port (guest -> host throughput).
 *
 * Buffers are 2 KiB, one per descriptor: RX descriptor i and TX
 * descriptor i each own buffer i of their ring for good. A frame is the
 * 12-byte virtio_net_hdr_v1 (all zero: no offloads are negotiated, so the
 * host hands over complete, checksummed frames) followed by Ethernet.
 * The BSP polls the NICs from its main loop (virtio_poll).
 */
#include "virtio.h"

#define VIRTIO_NET_F_MAC        (1ULL << 5)
#define NET_HDR                 12
#define BUF                     2048
#define MAX_NIC                 4
#define ARP_SLOTS               8
#define ETH_ARP                 0x0806
#define ETH_IP                  0x0800
#define ETH_LEN                 14
#define IP_LEN                  20
#define UDP_LEN                 8
#define UDP_MAX                 1472            /* MTU 1500 */
#define PORT_ECHO               7
#define PORT_SINK               9
#define RX_BUDGET               64
#define TX_BATCH                32
#define BUSY_NS                 (100 * NSEC_PER_MSEC)  /* after traffic: spin */
#define TIMEOUT_NS              (5000 * NSEC_PER_MSEC)
#define PAT_CYCLE               251             /* net send: byte k is k % 251 */

struct nic {
	struct vdev *v;
	struct vq rx, tx;
	u8 mac[6];
	u8 ip[4];
	u8 *rxbuf, *txbuf;
	u16 txfree[VQ_SIZE_MAX];
	unsigned ntxfree;
	struct {
		u8 ip[4], mac[6];
		bool valid;
	} arp[ARP_SLOTS];
	unsigned arp_next;
	u16 ip_id;
	u64 last_rx;
	u64 rx_frames, tx_frames, rx_other, echoes, pings;
	u64 sink_bytes, sink_dgrams;
	u32 sink_crc;
};

static struct nic nics[MAX_NIC];
static unsigned nnics;
static u8 pat[PAT_CYCLE + UDP_MAX];
static const u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

/* ---- bytes ---- */

static u16 get16(const u8 *p)
{
	return (u16)(p[0] << 8 | p[1]);
}

static void put16(u8 *p, u16 v)
{
	p[0] = (u8)(v >> 8);
	p[1] = (u8)v;
}

static u16 csum(const u8 *p, unsigned len)
{
	u64 s = 0;

	for (; len > 1; len -= 2, p += 2)
		s += get16(p);
	if (len)
		s += (u32)p[0] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (u16)~s;
}

static bool parse_ip(const char *s, u8 ip[4])
{
	unsigned i, v;

	for (i = 0; i < 4; i++) {
		if (*s < '0' || *s > '9')
			return false;
		for (v = 0; *s >= '0' && *s <= '9' && v <= 255; s++)
			v = v * 10 + (unsigned)(*s - '0');
		if (v > 255 || (i < 3 && *s++ != '.'))
			return false;
		ip[i] = (u8)v;
	}
	return *s == '\0' || *s == ',';
}

/* `ip=A.B.C.D[,A.B.C.D...]`: the k-th address is NIC k's. */
static void config_ip(struct nic *n, unsigned k, const char *cmdline)
{
	const char *s = cmdline;

	n->ip[0] = 10;
	n->ip[1] = 0;
	n->ip[2] = (u8)(2 + k);
	n->ip[3] = 15;
	for (; *s; s++) {
		if ((s == cmdline || s[-1] == ' ') && !memcmp(s, "ip=", 3))
			break;
	}
	if (!*s)
		return;
	for (s += 3; k && *s && *s != ' '; s++)
		if (*s == ',')
			k--;
	if (!k)
		parse_ip(s, n->ip);
}

static const char *fmt_ip(char buf[16], const u8 ip[4])
{
	snprintf(buf, 16, "%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
	return buf;
}

static const char *fmt_mac(char buf[18], const u8 mac[6])
{
	unsigned i;

	for (i = 0; i < 6; i++) {
		buf[3 * i] = "0123456789abcdef"[mac[i] >> 4];
		buf[3 * i + 1] = "0123456789abcdef"[mac[i] & 15];
		buf[3 * i + 2] = i < 5 ? ':' : '\0';
	}
	return buf;
}

/* ---- set-up ---- */

void net_init(struct vdev *d, const char *cmdline)
{
	struct nic *n;
	unsigned i;

	if (nnics == MAX_NIC || vdev_begin(d, VIRTIO_NET_F_MAC) < 0)
		goto fail;
	n = &nics[nnics];
	if (vq_setup(&n->rx, d, 0, VQ_SIZE_MAX) < 0 || vq_setup(&n->tx, d, 1, VQ_SIZE_MAX) < 0)
		goto fail;
	n->rxbuf = dma_alloc_raw((u64)n->rx.size * BUF);
	n->txbuf = dma_alloc_raw((u64)n->tx.size * BUF);
	if (!n->rxbuf || !n->txbuf)
		goto fail;
	for (i = 0; i < 6; i++)
		n->mac[i] = d->features & VIRTIO_NET_F_MAC ? vdev_cfg8(d, i) : 0;
	if (!(d->features & VIRTIO_NET_F_MAC)) {
		n->mac[0] = 0x02;               /* locally administered */
		n->mac[5] = (u8)(nnics + 1);
	}
	config_ip(n, d->unit, cmdline);
	for (i = 0; i < n->rx.size; i++) {
		n->rx.desc[i] = (struct vring_desc){ (u64)(uintptr_t)(n->rxbuf + i * BUF), BUF,
						     VRING_DESC_F_WRITE, 0 };
		vq_add(&n->rx, (u16)i);
	}
	for (i = 0; i < n->tx.size; i++)
		n->txfree[i] = (u16)i;
	n->ntxfree = n->tx.size;
	for (i = 0; i < sizeof(pat); i++)
		pat[i] = (u8)(i % PAT_CYCLE);
	n->v = d;
	nnics++;
	vdev_driver_ok(d);
	vq_publish(&n->rx);
	return;
fail:
	d->ok = false;
}

/* ---- transmit ---- */

static void tx_reclaim(struct nic *n)
{
	u32 id, len;

	while (vq_used(&n->tx, &id, &len))
		n->txfree[n->ntxfree++] = (u16)id;
}

/* A free TX buffer (its slot in *slot), waiting for one if need be; the
 * frame starts after the zeroed virtio-net header. NULL on timeout. */
static u8 *tx_get(struct nic *n, unsigned *slot)
{
	u64 start = 0, last = 0, now;

	tx_reclaim(n);
	while (!n->ntxfree) {
		vq_publish(&n->tx);
		now = now_ns(0);
		if (!start)
			start = last = now;
		if (now - last > STALL_NS) {
			n->tx.stalls++;
			vq_kick(&n->tx);
			last = now;
		}
		if (now - start > TIMEOUT_NS)
			return NULL;
		cpu_relax();
		tx_reclaim(n);
	}
	*slot = n->txfree[--n->ntxfree];
	memset(n->txbuf + *slot * BUF, 0, NET_HDR);
	return n->txbuf + *slot * BUF + NET_HDR;
}

static void tx_put(struct nic *n, unsigned slot, unsigned frame_len)
{
	n->tx.desc[slot] = (struct vring_desc){ (u64)(uintptr_t)(n->txbuf + slot * BUF),
						NET_HDR + frame_len, 0, 0 };
	vq_add(&n->tx, (u16)slot);
	n->tx_frames++;
}

static void eth_hdr(struct nic *n, u8 *f, const u8 *dst, u16 type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, n->mac, 6);
	put16(f + 12, type);
}

/* IPv4 header at `p` for `len` payload bytes. */
static void ip_hdr(struct nic *n, u8 *p, const u8 *dst, u8 proto, unsigned len)
{
	p[0] = 0x45;
	p[1] = 0;
	put16(p + 2, (u16)(IP_LEN + len));
	put16(p + 4, n->ip_id++);
	put16(p + 6, 0x4000);                   /* DF */
	p[8] = 64;
	p[9] = proto;
	put16(p + 10, 0);
	memcpy(p + 12, n->ip, 4);
	memcpy(p + 16, dst, 4);
	put16(p + 10, csum(p, IP_LEN));
}

/* Builds a UDP datagram in a TX buffer (not yet queued); returns a pointer
 * to its payload, to be filled before tx_put(slot, ETH_LEN+IP_LEN+UDP_LEN+len). */
static u8 *udp_frame(struct nic *n, unsigned *slot, const u8 *mac, const u8 *ip, u16 sport,
		     u16 dport, unsigned len)
{
	u8 *f = tx_get(n, slot), *u;

	if (!f)
		return NULL;
	eth_hdr(n, f, mac, ETH_IP);
	ip_hdr(n, f + ETH_LEN, ip, 17, UDP_LEN + len);
	u = f + ETH_LEN + IP_LEN;
	put16(u, sport);
	put16(u + 2, dport);
	put16(u + 4, (u16)(UDP_LEN + len));
	put16(u + 6, 0);                        /* no checksum (allowed over IPv4) */
	return u + UDP_LEN;
}

static void arp_send(struct nic *n, u16 op, const u8 *mac, const u8 *ip)
{
	unsigned slot;
	u8 *f = tx_get(n, &slot), *a;

	if (!f)
		return;
	eth_hdr(n, f, op == 1 ? bcast : mac, ETH_ARP);
	a = f + ETH_LEN;
	put16(a, 1);
	put16(a + 2, ETH_IP);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, op);
	memcpy(a + 8, n->mac, 6);
	memcpy(a + 14, n->ip, 4);
	memcpy(a + 18, op == 1 ? (const u8 *)"\0\0\0\0\0\0" : mac, 6);
	memcpy(a + 24, ip, 4);
	tx_put(n, slot, ETH_LEN + 28 < 60 ? 60 : ETH_LEN + 28);
}

/* ---- receive ---- */

static void arp_learn(struct nic *n, const u8 *ip, const u8 *mac)
{
	unsigned i;

	for (i = 0; i < ARP_SLOTS; i++)
		if (n->arp[i].valid && !memcmp(n->arp[i].ip, ip, 4))
			break;
	if (i == ARP_SLOTS)
		i = n->arp_next++ % ARP_SLOTS;
	memcpy(n->arp[i].ip, ip, 4);
	memcpy(n->arp[i].mac, mac, 6);
	n->arp[i].valid = true;
}

static const u8 *arp_lookup(struct nic *n, const u8 *ip)
{
	unsigned i;

	for (i = 0; i < ARP_SLOTS; i++)
		if (n->arp[i].valid && !memcmp(n->arp[i].ip, ip, 4))
			return n->arp[i].mac;
	return NULL;
}

static void rx_arp(struct nic *n, const u8 *a, unsigned len)
{
	if (len < 28 || get16(a) != 1 || get16(a + 2) != ETH_IP || a[4] != 6 || a[5] != 4)
		return;
	if (memcmp(a + 14, "\0\0\0\0", 4))
		arp_learn(n, a + 14, a + 8);
	if (get16(a + 6) == 1 && !memcmp(a + 24, n->ip, 4))
		arp_send(n, 2, a + 8, a + 14);
}

static void rx_icmp(struct nic *n, const u8 *eth_src, const u8 *ip, unsigned hl,
		    unsigned len)
{
	const u8 *icmp = ip + hl;
	unsigned ilen = len - hl, slot;
	u8 *f, *r;

	if (ilen < 8 || icmp[0] != 8)           /* echo request */
		return;
	f = tx_get(n, &slot);
	if (!f)
		return;
	eth_hdr(n, f, eth_src, ETH_IP);
	ip_hdr(n, f + ETH_LEN, ip + 12, 1, ilen);
	r = f + ETH_LEN + IP_LEN;
	memcpy(r, icmp, ilen);
	r[0] = 0;                               /* echo reply */
	put16(r + 2, 0);
	put16(r + 2, csum(r, ilen));
	tx_put(n, slot, ETH_LEN + IP_LEN + ilen);
	n->pings++;
}

static void rx_udp(struct nic *n, const u8 *eth_src, const u8 *ip, unsigned hl, unsigned len)
{
	const u8 *u = ip + hl;
	unsigned ulen, slot;
	u8 *out;

	if (len - hl < UDP_LEN)
		return;
	ulen = get16(u + 4);
	if (ulen < UDP_LEN || ulen > len - hl)
		return;
	ulen -= UDP_LEN;
	switch (get16(u + 2)) {
	case PORT_SINK:
		n->sink_bytes += ulen;
		n->sink_dgrams++;
		n->sink_crc = crc32_update(n->sink_crc, u + UDP_LEN, ulen);
		break;
	case PORT_ECHO:
		out = udp_frame(n, &slot, eth_src, ip + 12, PORT_ECHO, get16(u), ulen);
		if (!out)
			return;
		memcpy(out, u + UDP_LEN, ulen);
		tx_put(n, slot, ETH_LEN + IP_LEN + UDP_LEN + ulen);
		n->echoes++;
		break;
	default:
		n->rx_other++;
	}
}

static void rx_frame(struct nic *n, const u8 *f, unsigned len)
{
	const u8 *ip = f + ETH_LEN;
	unsigned hl, tot;

	n->rx_frames++;
	if (len < ETH_LEN || (memcmp(f, n->mac, 6) && memcmp(f, bcast, 6)))
		goto other;
	if (get16(f + 12) == ETH_ARP) {
		rx_arp(n, ip, len - ETH_LEN);
		return;
	}
	if (get16(f + 12) != ETH_IP || len < ETH_LEN + IP_LEN || (ip[0] >> 4) != 4)
		goto other;
	hl = (ip[0] & 15) * 4u;
	tot = get16(ip + 2);
	if (hl < IP_LEN || tot < hl || tot > len - ETH_LEN || memcmp(ip + 16, n->ip, 4) ||
	    (get16(ip + 6) & 0x3fff))           /* fragments: not handled */
		goto other;
	if (ip[9] == 1)
		rx_icmp(n, f + 6, ip, hl, tot);
	else if (ip[9] == 17)
		rx_udp(n, f + 6, ip, hl, tot);
	else
		goto other;
	return;
other:
	n->rx_other++;
}

/* Handles up to `budget` received frames; returns how many. */
static unsigned rx_poll(struct nic *n, unsigned budget)
{
	unsigned done = 0;
	u32 id, len;

	while (done < budget && vq_used(&n->rx, &id, &len)) {
		if (id < n->rx.size && len > NET_HDR && len <= BUF)
			rx_frame(n, n->rxbuf + id * BUF + NET_HDR, len - NET_HDR);
		vq_add(&n->rx, (u16)id);
		done++;
	}
	if (done) {
		vq_publish(&n->rx);
		vq_publish(&n->tx);             /* replies */
		n->last_rx = now_ns(0);
	}
	tx_reclaim(n);
	return done;
}

u64 net_poll(void)
{
	u64 wait = ~0ULL, now = 0;
	unsigned i;

	for (i = 0; i < nnics; i++) {
		struct nic *n = &nics[i];

		if (rx_poll(n, RX_BUDGET))
			wait = 0;
		if (!now && wait)
			now = now_ns(0);
		if (wait && now - n->last_rx < BUSY_NS)
			wait = 0;
	}
	return wait;
}

/* ---- commands ---- */

static struct nic *nic_for(const u8 *ip)
{
	unsigned i;

	for (i = 0; i < nnics; i++)
		if (!memcmp(nics[i].ip, ip, 3))         /* same /24 */
			return &nics[i];
	return nnics ? &nics[0] : NULL;
}

static const u8 *resolve(struct nic *n, const u8 *ip)
{
	unsigned tries;

	for (tries = 0; tries < 5; tries++) {
		u64 start = now_ns(0);

		if (arp_lookup(n, ip))
			break;
		arp_send(n, 1, NULL, ip);
		vq_publish(&n->tx);
		while (!arp_lookup(n, ip) && now_ns(0) - start < 200 * NSEC_PER_MSEC)
			rx_poll(n, RX_BUDGET);
	}
	return arp_lookup(n, ip);
}

static void cmd_send(char *p)
{
	const char *ips = next_token(&p), *opt;
	u64 port, bytes, dgram = UDP_MAX, off = 0, t0, ns, dgrams = 0, kicks, stalls;
	u8 ip[4];
	const u8 *mac;
	struct nic *n;
	bool ok = ips && parse_ip(ips, ip) && arg_u64(&p, &port) && port <= 0xffff &&
		  arg_u64(&p, &bytes);

	opt = ok ? next_token(&p) : NULL;
	if (!ok || (opt && (!parse_size(opt, &dgram) || !dgram || dgram > UDP_MAX))) {
		out_line("ERR usage: net send IP PORT BYTES [DGRAM<=%u]", UDP_MAX);
		return;
	}
	n = nic_for(ip);
	mac = n ? resolve(n, ip) : NULL;
	if (!mac) {
		out_line("NETSEND err=arp");
		return;
	}
	kicks = n->tx.kicks;
	stalls = n->tx.stalls;
	t0 = now_ns(0);
	while (off < bytes) {
		unsigned len = (unsigned)(bytes - off < dgram ? bytes - off : dgram), slot;
		u8 *pl = udp_frame(n, &slot, mac, ip, PORT_SINK, (u16)port, len);

		if (!pl)
			break;
		memcpy(pl, pat + off % PAT_CYCLE, len);
		tx_put(n, slot, ETH_LEN + IP_LEN + UDP_LEN + len);
		off += len;
		if (++dgrams % TX_BATCH == 0) {
			vq_publish(&n->tx);
			rx_poll(n, RX_BUDGET);
		}
	}
	vq_publish(&n->tx);
	while (n->ntxfree < n->tx.size && now_ns(0) - t0 < TIMEOUT_NS) {
		tx_reclaim(n);
		cpu_relax();
	}
	ns = now_ns(0) - t0;
	if (off < bytes || n->ntxfree < n->tx.size) {
		out_line("NETSEND err=timeout bytes=%llu", off);
		return;
	}
	out_line("NETSEND bytes=%llu dgrams=%llu ns=%llu mbps=%llu kicks=%llu stalls=%llu",
		 bytes, dgrams, ns, rate_mbps(bytes, ns), n->tx.kicks - kicks,
		 n->tx.stalls - stalls);
}

static void cmd_stats(struct nic *n, unsigned i)
{
	char crc[9];

	out_line("NETSTATS i=%u rx_frames=%llu tx_frames=%llu rx_other=%llu pings=%llu "
		 "echoes=%llu sink_bytes=%llu sink_dgrams=%llu sink_crc=%s", i,
		 n->rx_frames, n->tx_frames, n->rx_other, n->pings, n->echoes, n->sink_bytes,
		 n->sink_dgrams, hex32(crc, n->sink_crc));
}

void net_command(char *p)
{
	const char *sub = next_token(&p);
	char ip[16], mac[18];
	unsigned i;
	u64 k;

	if (!nnics) {
		out_line("ERR no net");
		return;
	}
	if (sub && !strcmp(sub, "info")) {
		for (i = 0; i < nnics; i++)
			out_line("NET i=%u mac=%s ip=%s", i, fmt_mac(mac, nics[i].mac),
				 fmt_ip(ip, nics[i].ip));
	} else if (sub && !strcmp(sub, "send")) {
		cmd_send(p);
	} else if (sub && !strcmp(sub, "stats")) {
		if (arg_u64(&p, &k))
			k < nnics ? cmd_stats(&nics[k], (unsigned)k) :
				    out_line("ERR no net %llu", k);
		else
			for (i = 0; i < nnics; i++)
				cmd_stats(&nics[i], i);
	} else if (sub && !strcmp(sub, "clear")) {
		for (i = 0; i < nnics; i++) {
			nics[i].sink_bytes = nics[i].sink_dgrams = 0;
			nics[i].sink_crc = 0;
		}
		out_line("NET cleared");
	} else {
		out_line("ERR usage: net info|send IP PORT BYTES [DGRAM]|stats [N]|clear");
	}
}
