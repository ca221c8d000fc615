// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "migration/uri.h"
#include "vmm/log.h"
#include "vmm/sock_path.h"

static int parse_tcp(const char *s, struct mig_uri *u, char *err, size_t errlen)
{
	const char *colon, *host = s;
	size_t hlen;

	if (*s == '[') {        /* [v6addr]:port */
		const char *end = strchr(s, ']');

		if (!end || end[1] != ':') {
			snprintf(err, errlen, "tcp: bad IPv6 address in '%s'", s);
			return -1;
		}
		host = s + 1;
		hlen = (size_t)(end - host);
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon) {
			snprintf(err, errlen, "tcp: expected tcp:[HOST]:PORT, got 'tcp:%s'", s);
			return -1;
		}
		hlen = (size_t)(colon - s);
	}
	if (hlen >= sizeof(u->host) || !colon[1] || strlen(colon + 1) >= sizeof(u->port) ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
		snprintf(err, errlen, "tcp: bad host or port in 'tcp:%s'", s);
		return -1;
	}
	memcpy(u->host, host, hlen);
	u->host[hlen] = 0;
	snprintf(u->port, sizeof(u->port), "%s", colon + 1);
	return 0;
}

int uri_parse(const char *uri, struct mig_uri *u, char *err, size_t errlen)
{
	memset(u, 0, sizeof(*u));
	if (!strncmp(uri, "tcp:", 4)) {
		u->kind = URI_TCP;
		return parse_tcp(uri + 4, u, err, errlen);
	}
	if (!strncmp(uri, "file:", 5) || !strncmp(uri, "unix:", 5)) {
		u->kind = uri[0] == 'f' ? URI_FILE : URI_UNIX;
		if (!uri[5] || strlen(uri + 5) >= sizeof(u->path) ||
		    (u->kind == URI_UNIX && strlen(uri + 5) >= sizeof(((struct sockaddr_un *)0)->sun_path))) {
			snprintf(err, errlen, "'%s': missing or too long path", uri);
			return -1;
		}
		snprintf(u->path, sizeof(u->path), "%s", uri + 5);
		return 0;
	}
	snprintf(err, errlen, "unsupported migration URI '%s' (expected file:PATH, tcp:HOST:PORT or unix:PATH)",
		 uri);
	return -1;
}

static int unix_addr(const struct mig_uri *u, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	/* uri_parse() bounded the path by sun_path already. */
	memcpy(sun->sun_path, u->path, strnlen(u->path, sizeof(sun->sun_path) - 1));
	return 0;
}

static int tune(int fd)
{
	int one = 1, buf = 4 << 20;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* Large buffers: RAM batches are megabytes. */
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	return fd;
}

/* connect() bounded by timeout_ms, then back to blocking. */
static int connect_timeout(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
	int fl = fcntl(fd, F_GETFL), err = 0;
	socklen_t elen = sizeof(err);
	struct pollfd p = { .fd = fd, .events = POLLOUT };

	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	if (connect(fd, sa, len) < 0) {
		if (errno != EINPROGRESS)
			return -1;
		if (poll(&p, 1, timeout_ms) != 1) {
			errno = ETIMEDOUT;
			return -1;
		}
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
		if (err) {
			errno = err;
			return -1;
		}
	}
	fcntl(fd, F_SETFL, fl);
	return 0;
}

int uri_connect(const struct mig_uri *u, int timeout_ms)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL, *ai;
	struct sockaddr_un sun;
	int fd = -1, rc;

	if (u->kind == URI_UNIX) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		unix_addr(u, &sun);
		if (fd >= 0 && connect_timeout(fd, (struct sockaddr *)&sun, sizeof(sun), timeout_ms) == 0)
			return fd;
		pr_err("cannot connect to unix:%s: %s", u->path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	rc = getaddrinfo(*u->host ? u->host : "localhost", u->port, &hints, &res);
	if (rc) {
		pr_err("tcp:%s:%s: %s", u->host, u->port, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect_timeout(fd, ai->ai_addr, ai->ai_addrlen, timeout_ms) == 0)
			break;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	if (fd < 0)
		pr_err("cannot connect to tcp:%s:%s: %s", u->host, u->port, strerror(errno));
	freeaddrinfo(res);
	return fd < 0 ? -1 : tune(fd);
}

static int listen_unix(const struct mig_uri *u, char *bound, size_t len)
{
	struct sockaddr_un sun;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	unix_addr(u, &sun);
	/* A stale socket from an earlier run goes; anything else stays. */
	if (sock_path_claim(u->path, "--incoming unix:") < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, 1) < 0) {
		pr_err("cannot listen on unix:%s: %s", u->path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	snprintf(bound, len, "unix:%s", u->path);
	return fd;
}

int uri_listen(const struct mig_uri *u, char *bound, size_t len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?", port[8] = "?";
	int fd = -1, one = 1, rc;

	if (u->kind == URI_UNIX)
		return listen_unix(u, bound, len);
	rc = getaddrinfo(*u->host ? u->host : NULL, u->port, &hints, &res);
	if (rc) {
		pr_err("tcp:%s:%s: %s", u->host, u->port, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1) < 0) {
		pr_err("cannot listen on tcp:%s:%s: %s", u->host, u->port, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port),
		    NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(bound, len, "tcp:%s:%s", host, port);
	return tune(fd);
}
