// SPDX-License-Identifier: MIT
/*
 * Client mode: connect to a VM's control socket, speak the same QMP lines a
 * script would (greeting, qmp_capabilities, one command), print the result
 * and exit. Every read has a deadline so a wedged VM cannot hang a script.
 *
 * `--quit` returns only once the VM process is gone: after the reply it
 * waits for EOF (the VM closes clients last thing on its way out), then
 * for the process itself through a pidfd of the socket's peer, so a caller
 * can start a new VM on the same name or disk right after.
 */
#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmm/client.h"
#include "vmm/client_internal.h"
#include "vmm/control.h"
#include "vmm/log.h"
#include "vmm/sock_path.h"
#include "vmm/vm.h"

#define CLIENT_MAX_LISTED 32    /* VM names quoted in "several VMs" */


long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Wait for fd to become readable until `deadline`: 0 if it did not. */
static int wait_readable(int fd, long long deadline)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	long long left;
	int n;

	for (;;) {
		left = deadline - now_ms();
		if (left <= 0)
			return 0;
		n = poll(&p, 1, (int)(left > INT_MAX ? INT_MAX : left));
		/* On a poll error, let the read that follows report it. */
		if (n > 0 || (n < 0 && errno != EINTR))
			return 1;
	}
}

/* Next line as JSON. NULL on EOF (errno 0), timeout (ETIMEDOUT) or error. */
struct json_object *client_read(struct client *c, long long deadline)
{
	struct json_object *obj;
	char *nl;
	ssize_t n;

	while (!(nl = memchr(c->buf, '\n', c->len))) {
		if (c->len == sizeof(c->buf)) {
			errno = EMSGSIZE;
			return NULL;
		}
		if (!wait_readable(c->fd, deadline)) {
			errno = ETIMEDOUT;
			return NULL;
		}
		n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (n <= 0) {
			errno = n == 0 ? 0 : errno == ECONNRESET ? 0 : errno;
			return NULL;
		}
		c->len += (size_t)n;
	}
	*nl = 0;
	obj = json_tokener_parse(c->buf);
	c->len -= (size_t)(nl + 1 - c->buf);
	memmove(c->buf, nl + 1, c->len);
	if (!obj)
		errno = EPROTO;
	return obj;
}

void client_read_failed(struct client *c, const char *what)
{
	if (errno == ETIMEDOUT)
		pr_err("%s: no %s within %d s", c->path, what, CLIENT_TIMEOUT_MS / 1000);
	else if (errno == 0)
		pr_err("%s: the VM closed the connection before its %s", c->path, what);
	else
		pr_err("%s: reading the %s: %s", c->path, what, strerror(errno));
}

int client_send_args(struct client *c, const char *cmd, struct json_object *args)
{
	struct json_object *req = json_object_new_object();
	const char *line;
	size_t n;
	int ret = 0;

	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", args);
	json_object_object_add(req, "id", json_object_new_int(++c->next_id));
	line = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	n = strlen(line);
	if (send(c->fd, line, n, MSG_NOSIGNAL) != (ssize_t)n ||
	    send(c->fd, "\n", 1, MSG_NOSIGNAL) != 1) {
		pr_err("%s: sending '%s': %s", c->path, cmd, strerror(errno));
		ret = -1;
	}
	json_object_put(req);
	return ret;
}

static int client_send(struct client *c, const char *cmd)
{
	return client_send_args(c, cmd, NULL);
}

/* The reply to our request `id`, skipping events. NULL after printing why. */
struct json_object *client_reply(struct client *c, const char *cmd)
{
	long long deadline = now_ms() + CLIENT_TIMEOUT_MS;
	struct json_object *obj, *v, *ret;

	while ((obj = client_read(c, deadline))) {
		if (json_object_object_get_ex(obj, "error", &v)) {
			json_object_object_get_ex(v, "desc", &v);
			pr_err("%s: '%s' failed: %s", c->path, cmd, json_object_get_string(v));
			json_object_put(obj);
			return NULL;
		}
		if (json_object_object_get_ex(obj, "id", &v) &&
		    json_object_get_int(v) == c->next_id &&
		    json_object_object_get_ex(obj, "return", &ret)) {
			json_object_get(ret);
			json_object_put(obj);
			return ret;
		}
		json_object_put(obj);           /* an event */
	}
	client_read_failed(c, "reply");
	return NULL;
}

static struct json_object *client_call(struct client *c, const char *cmd)
{
	return client_send(c, cmd) < 0 ? NULL : client_reply(c, cmd);
}

static int client_connect(struct client *c)
{
	struct sockaddr_un sun;
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (sock_path_addr(c->path, &sun) < 0) {
		pr_err("--api-sock '%s': longer than %d bytes", c->path, CONTROL_PATH_MAX - 1);
		return -1;
	}
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		pr_err("cannot connect to %s: %s%s", c->path, strerror(errno),
		       errno == ECONNREFUSED ? " (no VM is running there)" : "");
		return -1;
	}
	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
		c->pid = cred.pid;
	return 0;
}

/* Greeting, then qmp_capabilities: the handshake any QMP client does. */
static int client_handshake(struct client *c)
{
	struct json_object *obj, *ret;
	bool ok;

	obj = client_read(c, now_ms() + CLIENT_TIMEOUT_MS);
	if (!obj) {
		client_read_failed(c, "greeting");
		return -1;
	}
	ok = json_object_object_get_ex(obj, "QMP", NULL);
	if (!ok && json_object_object_get_ex(obj, "error", &ret) &&
	    json_object_object_get_ex(ret, "desc", &ret))
		pr_err("%s: %s", c->path, json_object_get_string(ret));
	else if (!ok)
		pr_err("%s: not a minivmm control socket (no QMP greeting)", c->path);
	json_object_put(obj);
	if (!ok)
		return -1;
	ret = client_call(c, "qmp_capabilities");
	json_object_put(ret);
	return ret ? 0 : -1;
}

static int client_status(struct client *c)
{
	struct json_object *ret = client_call(c, "query-status"), *st;

	if (!ret)
		return EXIT_VM_FAILURE;
	if (!json_object_object_get_ex(ret, "status", &st)) {
		pr_err("%s: query-status returned no status", c->path);
		json_object_put(ret);
		return EXIT_VM_FAILURE;
	}
	printf("%s\n", json_object_get_string(st));
	json_object_put(ret);
	return EXIT_OK;
}

/* After `quit`: EOF on the socket, then the process gone. */
int client_wait_gone(struct client *c)
{
	long long deadline = now_ms() + CLIENT_QUIT_TIMEOUT_MS;
	struct json_object *obj;
	int pidfd;

	while ((obj = client_read(c, deadline)))
		json_object_put(obj);           /* SHUTDOWN and other events */
	if (errno) {
		client_read_failed(c, "exit");
		return -1;
	}
	if (c->pid <= 0)
		return 0;
	pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
	if (pidfd < 0)
		return errno == ESRCH ? 0 : -1;
	/* A pidfd becomes readable when the process has exited. */
	if (!wait_readable(pidfd, deadline)) {
		pr_err("%s: the VM (pid %d) did not exit within %d s", c->path, (int)c->pid,
		       CLIENT_QUIT_TIMEOUT_MS / 1000);
		close(pidfd);
		return -1;
	}
	close(pidfd);
	return 0;
}

static int client_quit(struct client *c)
{
	struct json_object *ret = client_call(c, "quit");

	if (!ret)
		return EXIT_VM_FAILURE;
	json_object_put(ret);
	return client_wait_gone(c) < 0 ? EXIT_VM_FAILURE : EXIT_OK;
}

/* ---- finding the VM ---- */

struct vm_list {
	unsigned n;
	char *names[CLIENT_MAX_LISTED];
	char path[CONTROL_PATH_MAX];    /* of the last live one */
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every <name>.sock in `dir` that something listens on. */
static int scan_dir(const char *dir, struct vm_list *list)
{
	char path[CONTROL_PATH_MAX + 256];
	struct dirent *d;
	DIR *dp = opendir(dir);
	size_t len;

	if (!dp)
		return errno == ENOENT ? 0 : -1;
	while ((d = readdir(dp))) {
		len = strlen(d->d_name);
		if (len <= 5 || strcmp(d->d_name + len - 5, ".sock"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		if (strlen(path) >= CONTROL_PATH_MAX || sock_path_probe(path) != SOCK_LIVE)
			continue;
		if (list->n < CLIENT_MAX_LISTED)
			list->names[list->n] = strndup(d->d_name, len - 5);
		list->n++;
		snprintf(list->path, sizeof(list->path), "%s", path);
	}
	closedir(dp);
	return 0;
}

static void report_several(const char *dir, struct vm_list *list)
{
	char names[1024] = "";
	unsigned shown = list->n < CLIENT_MAX_LISTED ? list->n : CLIENT_MAX_LISTED;
	size_t off = 0;

	qsort(list->names, shown, sizeof(list->names[0]), cmp_str);
	for (unsigned i = 0; i < shown && off < sizeof(names); i++)
		off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s", i ? ", " : "",
					list->names[i] ? list->names[i] : "?");
	pr_err("%u VMs are running in %s (%s%s): choose one with --name NAME or --api-sock PATH",
	       list->n, dir, names, list->n > shown ? ", ..." : "");
}

/* The one live VM in the default folder, or the one --name picks. */
static int client_find(const struct vm_config *cfg, char *path, size_t size)
{
	struct vm_list list = { .n = 0 };
	char dir[CONTROL_PATH_MAX];
	int ret = -1;

	if (cfg->name) {
		if (control_default_path(cfg->name, path, size) < 0)
			return -1;
		if (sock_path_probe(path) == SOCK_LIVE)
			return 0;
		pr_err("no VM named '%s' is running (nothing answers on %s)", cfg->name, path);
		return -1;
	}
	if (control_sock_dir(dir, sizeof(dir)) < 0)
		return -1;
	if (scan_dir(dir, &list) < 0)
		pr_err("cannot list %s: %s", dir, strerror(errno));
	else if (list.n == 0)
		pr_err("no running VM found in %s (give --api-sock PATH)", dir);
	else if (list.n > 1)
		report_several(dir, &list);
	else
		ret = snprintf(path, size, "%s", list.path) < 0 ? -1 : 0;
	for (unsigned i = 0; i < list.n && i < CLIENT_MAX_LISTED; i++)
		free(list.names[i]);
	return ret;
}

int client_main(const struct vm_config *cfg, const struct client_request *req)
{
	char path[CONTROL_PATH_MAX];
	struct client *c;
	int ret = EXIT_USAGE;

	if (cfg->api_sock)
		snprintf(path, sizeof(path), "%s", cfg->api_sock);
	else if (client_find(cfg, path, sizeof(path)) < 0)
		return EXIT_USAGE;
	c = calloc(1, sizeof(*c));
	if (!c)
		return EXIT_VM_FAILURE;
	c->fd = -1;
	c->path = cfg->api_sock ? cfg->api_sock : path;
	if (client_connect(c) < 0)
		goto out;
	ret = EXIT_VM_FAILURE;
	if (client_handshake(c) < 0)
		goto out;
	switch (req->cmd) {
	case CLIENT_STATUS:
		ret = client_status(c);
		break;
	case CLIENT_QUIT:
		ret = client_quit(c);
		break;
	case CLIENT_MIGRATE:
		ret = client_migrate(c, req);
		break;
	default:
		break;
	}
out:
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return ret;
}
