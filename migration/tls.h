/* SPDX-License-Identifier: MIT */
/*
 * TLS for live migration connections (GnuTLS), credentials set the QEMU
 * way: a folder with QEMU's file names. X.509 when it holds ca-cert.pem
 * (the source presents client-cert.pem/client-key.pem and checks the
 * destination's server-cert.pem against the CA and the URI's host; the
 * destination requires and checks the source's), else a pre-shared key
 * from keys.psk (lines "USERNAME:HEXKEY"; the source uses the first).
 *
 * After the handshake each direction's record layer moves into the kernel
 * where it has TLS (migration/ktls.h), and stays in GnuTLS elsewhere.
 * A tls_link is one session over one connected socket. One thread may send
 * while another receives on it; two senders need a lock (the callers have
 * one). Reads and writes block, bounded by the socket's SO_RCVTIMEO and
 * SO_SNDTIMEO as plain ones are.
 */
#ifndef MIGRATION_TLS_H
#define MIGRATION_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum tls_role { TLS_SOURCE, TLS_DESTINATION };

struct tls_creds;
struct tls_link;

/* The folder's credentials for this role. NULL with one message. */
struct tls_creds *tls_creds_load(const char *dir, enum tls_role role);
void tls_creds_free(struct tls_creds *cr);
/* "x509" or "psk". */
const char *tls_creds_kind(const struct tls_creds *cr);

/* The handshake on fd. host: the source's name for the destination (the
 * URI's host, checked against its certificate); NULL on the destination.
 * NULL on failure, why says it in a few words. */
struct tls_link *tls_handshake(int fd, struct tls_creds *cr, const char *host, char *why,
			       size_t whylen);
void tls_free(struct tls_link *t);

/* Like send()/recv() on the socket: bytes moved, 0 at the peer's orderly
 * close (recv), -1 with errno (EAGAIN: the timeout; EBADMSG: a record that
 * failed authentication, such as a byte changed on the way). */
ssize_t tls_send(struct tls_link *t, const void *buf, size_t len);
/* Sends from up to TLS_IOV_MAX buffers at once, gathered into full-size
 * records: bytes sent (all of them, or a prefix of at least one record's
 * worth: call again with the rest), or -1 as tls_send(). */
#define TLS_IOV_MAX 64
struct iovec;
ssize_t tls_sendv(struct tls_link *t, const struct iovec *iov, int n);
ssize_t tls_recv(struct tls_link *t, void *buf, size_t len);
/* Decrypted bytes waiting: a poll() on the socket would not see them. */
bool tls_pending(struct tls_link *t);
/* The cipher in use and where records are made, for -v lines
 * ("TLS1.3 AES-256-GCM, kernel TLS" or "..., GnuTLS"). */
const char *tls_describe(struct tls_link *t, char *buf, size_t len);

#endif
