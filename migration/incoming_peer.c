// SPDX-License-Identifier: MIT
/*
 * Telling a migration source from a stray connection.
 *
 * A destination listens on a TCP port, where port scans and health checks
 * connect too. Before this, the first connection was taken as the source
 * and anything it failed to say ended the incoming migration. Now the
 * first bytes decide: a source opens with a header record carrying the
 * stream's magic. A connection that closes, stays silent or says anything
 * else before those 24 bytes is logged with its address and dropped, and
 * the destination keeps listening. Once the magic is there, every error is
 * the stream's and is fatal as before (a corrupt stream from a source must
 * fail loudly, not be waited out). The bytes are only peeked: the stream
 * reader reads them again.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "migration/incoming_peer.h"
#include "migration/stream.h"

void incoming_peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[NI_MAXHOST], serv[NI_MAXSERV];
	struct ucred cred;
	socklen_t cl = sizeof(cred);

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) &&
	    getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
		snprintf(buf, len, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0) {
		snprintf(buf, len, "pid %d uid %u", (int)cred.pid, (unsigned)cred.uid);
		return;
	}
	snprintf(buf, len, "an unknown peer");
}

const char *incoming_not_a_source(int fd, unsigned timeout_s)
{
	uint8_t buf[sizeof(struct record_hdr) + 8];
	struct timeval tv = { .tv_sec = (time_t)timeout_s }, old;
	socklen_t ol = sizeof(old);
	struct record_hdr h;
	ssize_t n;

	/* Blocking peek of the whole prefix, bounded by the timeout. */
	if (getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &old, &ol) < 0)
		old = (struct timeval){ 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	do
		n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_WAITALL);
	while (n < 0 && errno == EINTR);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &old, sizeof(old));
	if (n == 0)
		return "closed without a word";
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? "said nothing within the timeout" :
		       "failed before saying anything";
	if ((size_t)n < sizeof(buf)) {
		/* EOF or timeout with a prefix: a source's header would be whole. */
		return "closed or went silent before a whole stream header";
	}
	memcpy(&h, buf, sizeof(h));
	if (h.type != REC_HEADER || memcmp(buf + sizeof(h), STREAM_MAGIC, 8))
		return "not a minivmm stream";
	return NULL;
}
