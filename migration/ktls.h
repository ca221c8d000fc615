/* SPDX-License-Identifier: MIT */
/*
 * Kernel TLS (the `tls` ULP) for a connection whose handshake GnuTLS has
 * done: the record layer of each direction moves into the kernel, which
 * then encrypts what send() writes and decrypts what recv() reads. Touches
 * only the socket and reads the session's keys; the caller keeps using
 * GnuTLS for a direction that could not move.
 */
#ifndef MIGRATION_KTLS_H
#define MIGRATION_KTLS_H

#include <gnutls/gnutls.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * Hand the session's directions to the kernel where it can take them (AES-GCM
 * under TLS 1.2 or 1.3, the ULP present, nothing decrypted and waiting in
 * GnuTLS). *tx / *rx say which moved. Never fails: what stays is GnuTLS's.
 */
void ktls_enable(gnutls_session_t s, int fd, bool *tx, bool *rx);

/* recv() on a kernel-TLS socket: application data; 0 at close_notify (or
 * the peer's close); -1 with errno (EBADMSG: a record failed authentication;
 * EPIPE: another alert or a record type a migration never sends). */
ssize_t ktls_recv(int fd, void *buf, size_t len);

#endif
