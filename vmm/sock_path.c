// SPDX-License-Identifier: MIT
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/log.h"
#include "vmm/sock_path.h"

int sock_path_addr(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sun->sun_path, path);
	return 0;
}

enum sock_probe sock_path_probe(const char *path)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd, ret;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? SOCK_ABSENT : SOCK_ERROR;
	if (!S_ISSOCK(st.st_mode))
		return SOCK_NOT_SOCKET;
	if (sock_path_addr(path, &sun) < 0)
		return SOCK_ERROR;
	/* Non-blocking: a listener whose backlog is full is busy, not dead. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return SOCK_ERROR;
	ret = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	if (ret == 0 || errno == EAGAIN || errno == EINPROGRESS)
		ret = SOCK_LIVE;
	else if (errno == ECONNREFUSED)
		ret = SOCK_STALE;
	else
		ret = SOCK_ERROR;
	close(fd);
	return ret;
}

int sock_path_claim(const char *path, const char *what)
{
	switch (sock_path_probe(path)) {
	case SOCK_ABSENT:
		return 0;
	case SOCK_STALE:
		pr_info("%s: removing stale socket %s", what, path);
		if (unlink(path) < 0 && errno != ENOENT) {
			pr_err("%s %s: cannot remove the stale socket: %s", what, path,
			       strerror(errno));
			return -1;
		}
		return 0;
	case SOCK_LIVE:
		pr_err("%s %s: something is listening there already", what, path);
		return -1;
	case SOCK_NOT_SOCKET:
		pr_err("%s %s: the path exists and is not a socket", what, path);
		return -1;
	default:
		pr_err("%s %s: %s", what, path, strerror(errno));
		return -1;
	}
}
