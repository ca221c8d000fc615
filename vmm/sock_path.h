/* SPDX-License-Identifier: MIT */
/*
 * Unix socket paths we bind (the control socket, `--incoming unix:`) or
 * connect to: what is at a path, and clearing the way for bind() without
 * ever removing a file that is not a stale socket.
 */
#ifndef VMM_SOCK_PATH_H
#define VMM_SOCK_PATH_H

struct sockaddr_un;

/* Fill a sockaddr_un for `path`; -1 (ENAMETOOLONG) if it does not fit. */
int sock_path_addr(const char *path, struct sockaddr_un *sun);

enum sock_probe {
	SOCK_ABSENT,            /* nothing there */
	SOCK_STALE,             /* a socket file nobody listens on */
	SOCK_LIVE,              /* something accepts connections */
	SOCK_NOT_SOCKET,        /* a file of another kind: never touch it */
	SOCK_ERROR,             /* errno says why */
};
enum sock_probe sock_path_probe(const char *path);

/* Make `path` free for bind(): nothing there, or a stale socket (removed).
 * Anything else is refused with one line naming `what` and the reason. */
int sock_path_claim(const char *path, const char *what);

#endif
