/* SPDX-License-Identifier: MIT */
/*
 * Migration URIs: file:PATH, tcp:[HOST]:PORT (HOST may be empty, a name, an
 * IPv4 address or a [bracketed] IPv6 address), unix:PATH. Parsing is pure;
 * connecting and listening return sockets or -1 after one error line.
 */
#ifndef MIGRATION_URI_H
#define MIGRATION_URI_H

#include <stdbool.h>
#include <stddef.h>

enum uri_kind { URI_FILE, URI_TCP, URI_UNIX };

struct mig_uri {
	enum uri_kind kind;
	char host[256];         /* tcp: empty = any (listen) / localhost (connect) */
	char port[16];
	char path[4096];        /* file:, unix: */
};

/* 0, or -1 with a one-line reason in err. */
int uri_parse(const char *uri, struct mig_uri *u, char *err, size_t errlen);
/* Connected stream socket (blocking, CLOEXEC, TCP_NODELAY), or -1 (printed). */
int uri_connect(const struct mig_uri *u, int timeout_ms);
/* Listening socket, or -1 (printed). For tcp port 0 the kernel picks one:
 * `bound` gets the URI actually listened on ("tcp:127.0.0.1:40123"). */
int uri_listen(const struct mig_uri *u, char *bound, size_t boundlen);

#endif
