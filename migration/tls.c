// SPDX-License-Identifier: MIT
/*
 * TLS for migration connections (migration/tls.h says the contract).
 *
 * GnuTLS does the handshake (what Debian's QEMU uses); the record layer
 * then moves into the kernel where it has the `tls` ULP (migration/ktls.c),
 * and stays in GnuTLS where it does not (these hosts' own kernels): one
 * AES-GCM pass over every byte on each side either way, in user space or
 * in the kernel (scripts/bench/migrate --tls measures it). Why the handshake before anything else: the
 * destination must refuse a peer without valid credentials before reading
 * a single record from it. Authentication failures name their cause
 * (unknown PSK user, certificate not signed by the CA, wrong host) in the
 * one line the caller prints.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "migration/ktls.h"
#include "migration/tls.h"
#include "vmm/failpoint.h"
#include "vmm/log.h"

/* AES-GCM first: with AES-NI it is the cheapest per byte. */
#define PSK_PRIORITY  "NORMAL:-CHACHA20-POLY1305:+ECDHE-PSK:+DHE-PSK:+PSK"
#define X509_PRIORITY "NORMAL:-CHACHA20-POLY1305"

#define PSK_USERS_MAX 64

struct psk_user {
	char name[128];
	char hexkey[257];               /* 256 hex digits: a 128-byte key */
};

struct tls_creds {
	enum tls_role role;
	bool psk;
	/* keys.psk, read once (the source uses the first line): a handshake
	 * later (a postcopy recovery) runs where the file may no longer be
	 * reachable (seccomp, --chroot). */
	struct psk_user users[PSK_USERS_MAX];
	unsigned nr_users;
	gnutls_certificate_credentials_t x509;
	gnutls_psk_client_credentials_t psk_client;
	gnutls_psk_server_credentials_t psk_server;
};

/*
 * Where GnuTLS keeps the record layer, the cost per byte is AES-GCM, but the
 * cost per record and per syscall is what made a 1 GiB stream slow on hosts
 * where syscalls are dear: a record per 4 KiB page and a send() each, and two
 * recv()s per record (its header, then its body). So sends are gathered
 * into full-size records (STAGE_MAX) whose ciphertext collects in obuf, one
 * send() per batch (SEND_BATCH; GnuTLS pushes every record on its own, and
 * its cork only joins plaintext into records); receives read ahead into
 * rbuf (RBUF_SIZE), and GnuTLS takes its small reads from there. Read-ahead starts only after the handshake, and only
 * where the kernel does not take the receiving side: bytes read ahead would
 * be lost to kernel TLS.
 */
#define STAGE_MAX  16384                /* TLS's largest plaintext record */
#define SEND_BATCH (256 * 1024)         /* plaintext per tls_sendv() */
#define OBUF_SIZE  (SEND_BATCH + 4 * (STAGE_MAX + 256))  /* its records' ciphertext */
#define RBUF_SIZE  (256 * 1024)

struct tls_link {
	gnutls_session_t s;
	int fd;
	bool ktls_tx, ktls_rx;          /* that direction's records are the kernel's */
	uint8_t *stage;                 /* STAGE_MAX: small buffers gathered into one record */
	uint8_t *obuf;                  /* OBUF_SIZE: records made, not yet sent */
	size_t olen;
	bool batching;                  /* in tls_sendv(): records go to obuf */
	int send_errno;                 /* a flush failed: records were lost, no more sends */
	uint8_t *rbuf;                  /* RBUF_SIZE: ciphertext read ahead */
	size_t rpos, rlen;              /* rbuf[rpos..rlen) not yet given to GnuTLS */
};

static bool readable(const char *dir, const char *name, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", dir, name);
	return access(path, R_OK) == 0;
}

/* Every "USERNAME:HEXKEY" line of keys.psk. */
static int psk_read_users(struct tls_creds *cr, const char *path)
{
	char line[512];
	FILE *f = fopen(path, "re");

	if (!f)
		return -1;
	while (cr->nr_users < PSK_USERS_MAX && fgets(line, sizeof(line), f)) {
		struct psk_user *u = &cr->users[cr->nr_users];
		bool whole = strchr(line, '\n') || feof(f);
		char *colon;
		int c;

		/* A line longer than the buffer is past every bound: skip all of
		 * it, never read its tail as a line of its own. */
		while (!whole && (c = fgetc(f)) != EOF && c != '\n')
			;
		if (!whole)
			continue;
		line[strcspn(line, "\r\n")] = 0;
		colon = strchr(line, ':');
		if (!colon || colon == line || (size_t)(colon - line) >= sizeof(u->name) ||
		    strlen(colon + 1) >= sizeof(u->hexkey) || !colon[1])
			continue;
		*colon = 0;
		memcpy(u->name, line, (size_t)(colon - line) + 1);
		memcpy(u->hexkey, colon + 1, strlen(colon + 1) + 1);
		cr->nr_users++;
	}
	fclose(f);
	return cr->nr_users ? 0 : -1;
}

static int psk_lookup(gnutls_session_t s, const char *user, gnutls_datum_t *key)
{
	struct tls_creds *cr = gnutls_session_get_ptr(s);

	for (unsigned i = 0; cr && i < cr->nr_users; i++) {
		gnutls_datum_t hex = { (unsigned char *)cr->users[i].hexkey,
				       (unsigned)strlen(cr->users[i].hexkey) };

		if (!strcmp(cr->users[i].name, user))
			return gnutls_hex_decode2(&hex, key) < 0 ? -1 : 0;
	}
	return -1;      /* unknown user: the handshake fails */
}

static int load_psk(struct tls_creds *cr, const char *path)
{
	gnutls_datum_t key;
	int ret;

	cr->psk = true;
	if (psk_read_users(cr, path) < 0) {
		pr_err("TLS credentials: %s: expected lines USERNAME:HEXKEY", path);
		return -1;
	}
	if (cr->role == TLS_DESTINATION) {
		if (gnutls_psk_allocate_server_credentials(&cr->psk_server) < 0)
			return -1;
		gnutls_psk_set_server_credentials_function(cr->psk_server, psk_lookup);
		return 0;
	}
	/* The source is the first line's user. */
	key.data = (unsigned char *)cr->users[0].hexkey;
	key.size = (unsigned)strlen(cr->users[0].hexkey);
	ret = gnutls_psk_allocate_client_credentials(&cr->psk_client);
	if (ret >= 0)
		ret = gnutls_psk_set_client_credentials(cr->psk_client, cr->users[0].name, &key,
							GNUTLS_PSK_KEY_HEX);
	if (ret < 0)
		pr_err("TLS credentials: %s: %s", path, gnutls_strerror(ret));
	return ret < 0 ? -1 : 0;
}

static int load_x509(struct tls_creds *cr, const char *dir, const char *ca)
{
	const char *cert = cr->role == TLS_SOURCE ? "client-cert.pem" : "server-cert.pem";
	const char *key = cr->role == TLS_SOURCE ? "client-key.pem" : "server-key.pem";
	char cpath[4200], kpath[4200];
	int ret;

	if (gnutls_certificate_allocate_credentials(&cr->x509) < 0)
		return -1;
	ret = gnutls_certificate_set_x509_trust_file(cr->x509, ca, GNUTLS_X509_FMT_PEM);
	if (ret <= 0) {
		pr_err("TLS credentials: %s: %s", ca, ret < 0 ? gnutls_strerror(ret) : "no certificate");
		return -1;
	}
	if (!readable(dir, cert, cpath, sizeof(cpath)) || !readable(dir, key, kpath, sizeof(kpath))) {
		pr_err("TLS credentials: %s needs %s and %s", dir, cert, key);
		return -1;
	}
	ret = gnutls_certificate_set_x509_key_file(cr->x509, cpath, kpath, GNUTLS_X509_FMT_PEM);
	if (ret < 0) {
		pr_err("TLS credentials: %s, %s: %s", cpath, kpath, gnutls_strerror(ret));
		return -1;
	}
	return 0;
}

struct tls_creds *tls_creds_load(const char *dir, enum tls_role role)
{
	struct tls_creds *cr = calloc(1, sizeof(*cr));
	char path[4200];
	int ret;

	if (!cr)
		return NULL;
	cr->role = role;
	if (readable(dir, "ca-cert.pem", path, sizeof(path)))
		ret = load_x509(cr, dir, path);
	else if (readable(dir, "keys.psk", path, sizeof(path)))
		ret = load_psk(cr, path);
	else {
		pr_err("TLS credentials: %s holds neither ca-cert.pem nor keys.psk", dir);
		ret = -1;
	}
	if (ret < 0) {
		tls_creds_free(cr);
		return NULL;
	}
	return cr;
}

void tls_creds_free(struct tls_creds *cr)
{
	if (!cr)
		return;
	if (cr->x509)
		gnutls_certificate_free_credentials(cr->x509);
	if (cr->psk_client)
		gnutls_psk_free_client_credentials(cr->psk_client);
	if (cr->psk_server)
		gnutls_psk_free_server_credentials(cr->psk_server);
	free(cr);
}

const char *tls_creds_kind(const struct tls_creds *cr)
{
	return cr->psk ? "psk" : "x509";
}

static bool is_ip_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static int session_setup(gnutls_session_t s, struct tls_creds *cr, const char *host)
{
	int ret;

	ret = gnutls_priority_set_direct(s, cr->psk ? PSK_PRIORITY : X509_PRIORITY, NULL);
	if (ret < 0)
		return ret;
	if (cr->psk)
		return gnutls_credentials_set(s, GNUTLS_CRD_PSK, cr->role == TLS_SOURCE ?
					      (void *)cr->psk_client : (void *)cr->psk_server);
	ret = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cr->x509);
	if (ret < 0)
		return ret;
	if (cr->role == TLS_DESTINATION)
		gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
	/* Checked during the handshake: chain to our CA, and on the source
	 * the destination's name (an IP address matches an IP SAN). */
	gnutls_session_set_verify_cert(s, cr->role == TLS_SOURCE ? host : NULL, 0);
	if (cr->role == TLS_SOURCE && host && !is_ip_literal(host))     /* SNI: names only */
		gnutls_server_name_set(s, GNUTLS_NAME_DNS, host, strlen(host));
	return 0;
}

static void handshake_why(gnutls_session_t s, int ret, char *why, size_t whylen)
{
	unsigned status = gnutls_session_get_verify_cert_status(s);
	gnutls_datum_t out = { 0 };

	if (ret == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR && status &&
	    gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) >= 0) {
		snprintf(why, whylen, "TLS handshake failed: %s", out.data);
		why[strcspn(why, "\n")] = 0;
		while (*why && why[strlen(why) - 1] == ' ')
			why[strlen(why) - 1] = 0;
		gnutls_free(out.data);
		return;
	}
	snprintf(why, whylen, "TLS handshake failed: %s", ret == GNUTLS_E_AGAIN ?
		 "the peer said nothing within the timeout" : gnutls_strerror(ret));
}

/* Every byte of obuf to the socket; -1 with errno. A failure is final
 * (send_errno): GnuTLS took those records as sent, so the stream has a
 * hole and nothing may follow. */
static int link_flush(struct tls_link *t)
{
	size_t off = 0;

	while (off < t->olen) {
		ssize_t n = send(t->fd, t->obuf + off, t->olen - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			t->olen = 0;
			t->send_errno = n == 0 ? EPIPE : errno;
			errno = t->send_errno;
			return -1;
		}
		off += (size_t)n;
	}
	t->olen = 0;
	return 0;
}

static ssize_t link_vec_push(gnutls_transport_ptr_t ptr, const giovec_t *iov, int n)
{
	struct tls_link *t = ptr;
	struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n };
	size_t total = 0;

	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	if (t->batching && t->olen + total > OBUF_SIZE && link_flush(t) < 0)
		return -1;
	if (!t->batching || total > OBUF_SIZE)
		return sendmsg(t->fd, &m, MSG_NOSIGNAL);
	for (int i = 0; i < n; i++) {
		memcpy(t->obuf + t->olen, iov[i].iov_base, iov[i].iov_len);
		t->olen += iov[i].iov_len;
	}
	return (ssize_t)total;
}

static ssize_t link_push(gnutls_transport_ptr_t ptr, const void *buf, size_t len)
{
	struct tls_link *t = ptr;

	return send(t->fd, buf, len, MSG_NOSIGNAL);
}

static ssize_t link_pull_plain(gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
	struct tls_link *t = ptr;

	return recv(t->fd, buf, len, 0);
}

/* GnuTLS's read: from what was read ahead, else one recvmsg() that fills
 * the request and, in the same call, as much of rbuf as has arrived. */
static ssize_t link_pull(gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
	struct tls_link *t = ptr;
	struct iovec iov[2] = { { buf, len }, { t->rbuf, RBUF_SIZE } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t n;

	if (t->rpos < t->rlen) {
		n = (ssize_t)(len < t->rlen - t->rpos ? len : t->rlen - t->rpos);
		memcpy(buf, t->rbuf + t->rpos, (size_t)n);
		t->rpos += (size_t)n;
		return n;
	}
	n = recvmsg(t->fd, &m, 0);
	if (n <= (ssize_t)len)
		return n;
	t->rpos = 0;
	t->rlen = (size_t)n - len;
	return (ssize_t)len;
}

static int link_pull_timeout(gnutls_transport_ptr_t ptr, unsigned int ms)
{
	struct tls_link *t = ptr;
	struct pollfd p = { .fd = t->fd, .events = POLLIN };

	if (t->rpos < t->rlen)
		return 1;
	return poll(&p, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)ms);
}

/* The directions GnuTLS keeps go through the batching above. */
static int user_space_io(struct tls_link *t)
{
	if (t->ktls_tx && t->ktls_rx)
		return 0;
	if (!t->ktls_tx && (!(t->stage = malloc(STAGE_MAX)) || !(t->obuf = malloc(OBUF_SIZE))))
		return -1;
	if (!t->ktls_rx && !(t->rbuf = malloc(RBUF_SIZE)))
		return -1;
	gnutls_transport_set_ptr(t->s, t);
	gnutls_transport_set_push_function(t->s, link_push);
	gnutls_transport_set_vec_push_function(t->s, link_vec_push);
	if (t->rbuf) {
		gnutls_transport_set_pull_function(t->s, link_pull);
		gnutls_transport_set_pull_timeout_function(t->s, link_pull_timeout);
	} else {
		gnutls_transport_set_pull_function(t->s, link_pull_plain);
	}
	return 0;
}

struct tls_link *tls_handshake(int fd, struct tls_creds *cr, const char *host, char *why,
			       size_t whylen)
{
	struct tls_link *t = calloc(1, sizeof(*t));
	int ret;

	if (!t) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	/* No session tickets: nothing resumes a migration connection's session,
	 * and a ticket is a record kernel TLS would hand us as an error. */
	ret = gnutls_init(&t->s, (cr->role == TLS_SOURCE ? GNUTLS_CLIENT : GNUTLS_SERVER) |
			  GNUTLS_NO_SIGNAL | GNUTLS_NO_TICKETS);
	if (ret < 0) {
		free(t);
		snprintf(why, whylen, "TLS: %s", gnutls_strerror(ret));
		return NULL;
	}
	gnutls_session_set_ptr(t->s, cr);
	ret = session_setup(t->s, cr, host);
	if (ret >= 0) {
		gnutls_transport_set_int(t->s, fd);
		gnutls_handshake_set_timeout(t->s, 0);  /* the socket's timeouts bound it */
		do
			ret = gnutls_handshake(t->s);
		while (ret < 0 && !gnutls_error_is_fatal(ret) && ret != GNUTLS_E_AGAIN);
	}
	if (ret < 0) {
		handshake_why(t->s, ret, why, whylen);
		tls_free(t);
		return NULL;
	}
	t->fd = fd;
	/* Test builds: failpoint ktls-off keeps both directions in GnuTLS, so
	 * the user-space path is tested where the kernel has TLS too. */
	if (!failpoint("ktls-off"))
		ktls_enable(t->s, fd, &t->ktls_tx, &t->ktls_rx);
	if (user_space_io(t) < 0) {
		snprintf(why, whylen, "out of memory");
		tls_free(t);
		return NULL;
	}
	return t;
}

void tls_free(struct tls_link *t)
{
	if (!t)
		return;
	gnutls_deinit(t->s);
	free(t->stage);
	free(t->obuf);
	free(t->rbuf);
	free(t);
}

static ssize_t tls_errno(ssize_t ret)
{
	switch (ret) {
	case GNUTLS_E_AGAIN:
		errno = EAGAIN;
		break;
	case GNUTLS_E_INTERRUPTED:
		errno = EINTR;
		break;
	case GNUTLS_E_DECRYPTION_FAILED:
	case GNUTLS_E_MAC_VERIFY_FAILED:
	case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
	case GNUTLS_E_UNEXPECTED_PACKET:
		errno = EBADMSG;
		break;
	case GNUTLS_E_PREMATURE_TERMINATION:
		return 0;       /* the peer closed without close_notify: EOF */
	default:
		errno = EPIPE;
		break;
	}
	return -1;
}

ssize_t tls_send(struct tls_link *t, const void *buf, size_t len)
{
	struct iovec iov = { (void *)buf, len };

	return tls_sendv(t, &iov, 1);
}

/* One record of up to STAGE_MAX bytes from the front of iov, gathered
 * into stage unless the first buffer alone fills it. */
static ssize_t send_one_record(struct tls_link *t, const struct iovec *iov, int n)
{
	size_t len = 0;
	const void *rec;
	ssize_t ret;

	if (iov->iov_len >= STAGE_MAX) {
		rec = iov->iov_base;
		len = STAGE_MAX;
	} else {
		for (; n > 0 && len < STAGE_MAX; iov++, n--) {
			size_t take = iov->iov_len < STAGE_MAX - len ? iov->iov_len : STAGE_MAX - len;

			memcpy(t->stage + len, iov->iov_base, take);
			len += take;
		}
		rec = t->stage;
	}
	ret = gnutls_record_send(t->s, rec, len);
	return ret < 0 ? ret : (ssize_t)len;
}

ssize_t tls_sendv(struct tls_link *t, const struct iovec *iov, int n)
{
	struct iovec cur[TLS_IOV_MAX], *p = cur;
	size_t done = 0;
	ssize_t ret = 0;

	if (n > TLS_IOV_MAX)
		n = TLS_IOV_MAX;
	if (t->ktls_tx) {
		struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n };

		return sendmsg(t->fd, &m, MSG_NOSIGNAL);
	}
	if (t->send_errno) {
		errno = t->send_errno;
		return -1;
	}
	memcpy(cur, iov, (size_t)n * sizeof(*iov));
	t->batching = true;
	for (;;) {
		while (n && !p->iov_len) {      /* an empty record says nothing */
			p++;
			n--;
		}
		if (!n || done >= SEND_BATCH)
			break;
		ret = send_one_record(t, p, n);
		if (ret < 0)
			break;
		done += (size_t)ret;
		for (; n && (size_t)ret >= p->iov_len; p++, n--)
			ret -= (ssize_t)p->iov_len;
		if (n) {
			p->iov_base = (uint8_t *)p->iov_base + ret;
			p->iov_len -= (size_t)ret;
		}
	}
	t->batching = false;
	/* Records GnuTLS counts as sent must reach the socket, or the
	 * connection failed (a partial batch cannot be resumed). */
	if (link_flush(t) < 0 || t->send_errno) {
		errno = t->send_errno;
		return -1;
	}
	/* A record that failed after others went: say what went; the caller
	 * calls again with the rest and meets the error then (GnuTLS wants the
	 * same bytes again after EAGAIN or EINTR, which the rest starts with). */
	if (ret < 0 && !done)
		return tls_errno(ret);
	return (ssize_t)done;
}

ssize_t tls_recv(struct tls_link *t, void *buf, size_t len)
{
	ssize_t ret;

	if (t->ktls_rx)
		return ktls_recv(t->fd, buf, len);
	ret = gnutls_record_recv(t->s, buf, len);
	return ret < 0 ? tls_errno(ret) : ret;
}

bool tls_pending(struct tls_link *t)
{
	return t && !t->ktls_rx && (gnutls_record_check_pending(t->s) > 0 || t->rpos < t->rlen);
}

const char *tls_describe(struct tls_link *t, char *buf, size_t len)
{
	const char *where = t->ktls_tx && t->ktls_rx ? "kernel TLS" :
			    t->ktls_tx ? "kernel TLS sending, GnuTLS receiving" :
			    t->ktls_rx ? "GnuTLS sending, kernel TLS receiving" : "GnuTLS";

	snprintf(buf, len, "%s %s, %s", gnutls_protocol_get_name(gnutls_protocol_get_version(t->s)),
		 gnutls_cipher_get_name(gnutls_cipher_get(t->s)), where);
	return buf;
}
