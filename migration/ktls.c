// SPDX-License-Identifier: MIT
/*
 * Kernel TLS for migration connections (migration/ktls.h says the contract).
 *
 * Why: with GnuTLS in user space every byte of guest RAM is copied into a
 * record buffer and encrypted there, on the sender thread, before send();
 * with the record layer in the kernel the sender's send() of plaintext is
 * the whole cost on our side, and the kernel encrypts as it copies into the
 * socket buffer (XenServer measured evacuations 1.5x faster after the same
 * move). GnuTLS keeps the handshake, the credentials and the error messages.
 *
 * How: after the handshake the session's traffic keys, static IVs and
 * record sequence numbers (gnutls_record_get_state) become the socket's
 * TLS_TX and TLS_RX parameters. The two directions move independently, and
 * a direction that cannot move stays in GnuTLS: a host kernel without the
 * ULP (these machines' own kernels), a cipher the kernel lacks, or, for
 * receiving, bytes GnuTLS has already decrypted (they would be lost). The
 * sessions are created without TLS 1.3 session tickets (tls.c), the one
 * post-handshake message a peer would otherwise send, which the kernel
 * would hand us as a record of type handshake; no other such message is
 * sent on a migration connection.
 */
#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include "migration/ktls.h"
#include "vmm/log.h"

#define TLS_RECORD_ALERT        21
#define TLS_RECORD_DATA         23
#define TLS_ALERT_CLOSE_NOTIFY  0

/* Both AES-GCM layouts share their field order; only the sizes differ. */
union crypto_info {
	struct tls12_crypto_info_aes_gcm_128 g128;
	struct tls12_crypto_info_aes_gcm_256 g256;
};

/*
 * The kernel's parameters for one direction. TLS 1.2's GCM nonce is the
 * 4-byte salt from the key block and an explicit 8-byte part the sender
 * picks (GnuTLS, like the kernel, uses the sequence number); TLS 1.3's is
 * the 12-byte static IV, split 4 + 8, XORed with the sequence number.
 */
static int fill_info(gnutls_session_t s, int read, union crypto_info *ci, size_t *len,
		     const char **why)
{
	gnutls_cipher_algorithm_t cipher = gnutls_cipher_get(s);
	gnutls_protocol_t proto = gnutls_protocol_get_version(s);
	gnutls_datum_t iv, key;
	unsigned char seq[8];
	struct tls_crypto_info *info = &ci->g128.info;
	unsigned char *ivp, *keyp, *saltp, *seqp;
	size_t keylen;

	int ret;

	*why = "a protocol the kernel lacks";
	if (proto != GNUTLS_TLS1_2 && proto != GNUTLS_TLS1_3)
		return -1;
	ret = gnutls_record_get_state(s, read, NULL, &iv, &key, seq);
	if (ret < 0) {
		*why = gnutls_strerror(ret);
		return -1;
	}
	*why = "a cipher the kernel lacks";
	memset(ci, 0, sizeof(*ci));
	info->version = proto == GNUTLS_TLS1_2 ? TLS_1_2_VERSION : TLS_1_3_VERSION;
	if (cipher == GNUTLS_CIPHER_AES_128_GCM) {
		info->cipher_type = TLS_CIPHER_AES_GCM_128;
		ivp = ci->g128.iv, keyp = ci->g128.key, saltp = ci->g128.salt, seqp = ci->g128.rec_seq;
		keylen = TLS_CIPHER_AES_GCM_128_KEY_SIZE;
		*len = sizeof(ci->g128);
	} else if (cipher == GNUTLS_CIPHER_AES_256_GCM) {
		info->cipher_type = TLS_CIPHER_AES_GCM_256;
		ivp = ci->g256.iv, keyp = ci->g256.key, saltp = ci->g256.salt, seqp = ci->g256.rec_seq;
		keylen = TLS_CIPHER_AES_GCM_256_KEY_SIZE;
		*len = sizeof(ci->g256);
	} else {
		return -1;
	}
	if (key.size != keylen || iv.size < 4 || (proto == GNUTLS_TLS1_3 && iv.size != 12)) {
		*why = "unexpected key or IV sizes";
		return -1;
	}
	memcpy(keyp, key.data, keylen);
	memcpy(saltp, iv.data, 4);
	memcpy(ivp, proto == GNUTLS_TLS1_3 ? iv.data + 4 : seq, 8);
	memcpy(seqp, seq, 8);
	return 0;
}

static bool set_direction(gnutls_session_t s, int fd, int read)
{
	const char *why = NULL;
	union crypto_info ci;
	size_t len;
	int ret;

	if (fill_info(s, read, &ci, &len, &why) < 0) {
		pr_info("kernel TLS: %s stays in GnuTLS: %s", read ? "receiving" : "sending", why);
		return false;
	}
	ret = setsockopt(fd, SOL_TLS, read ? TLS_RX : TLS_TX, &ci, (socklen_t)len);
	memset(&ci, 0, sizeof(ci));     /* keys do not outlive their use here */
	if (ret < 0)
		pr_info("kernel TLS: %s stays in GnuTLS: the kernel refused it (%s)",
			read ? "receiving" : "sending", strerror(errno));
	return ret == 0;
}

void ktls_enable(gnutls_session_t s, int fd, bool *tx, bool *rx)
{
	*tx = *rx = false;
	if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) < 0) {
		pr_debug("kernel TLS: not on this host (%s): GnuTLS in user space", strerror(errno));
		return;
	}
	*tx = set_direction(s, fd, 0);
	if (gnutls_record_check_pending(s) == 0)
		*rx = set_direction(s, fd, 1);
	pr_debug("kernel TLS: send %s, receive %s", *tx ? "in the kernel" : "GnuTLS",
		 *rx ? "in the kernel" : "GnuTLS");
}

ssize_t ktls_recv(int fd, void *buf, size_t len)
{
	char cbuf[CMSG_SPACE(sizeof(unsigned char))];
	struct iovec iov = { buf, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	ssize_t n = recvmsg(fd, &msg, 0);

	if (n < 0)
		return -1;      /* EBADMSG from the kernel: authentication failed */
	c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_level != SOL_TLS || c->cmsg_type != TLS_GET_RECORD_TYPE ||
	    *CMSG_DATA(c) == TLS_RECORD_DATA)
		return n;
	/* An alert: level, description. close_notify ends the stream. */
	if (*CMSG_DATA(c) == TLS_RECORD_ALERT && n >= 2 &&
	    ((unsigned char *)buf)[1] == TLS_ALERT_CLOSE_NOTIFY)
		return 0;
	errno = EPIPE;
	return -1;
}
