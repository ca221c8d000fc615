// SPDX-License-Identifier: MIT
/*
 * The control socket on the main event loop (docs/control-api.md).
 *
 * Every client fd is non-blocking. Input is collected into a fixed 64 KiB
 * line buffer: each complete line is one request, a line that fills the
 * buffer without ending is answered with an error and the client dropped,
 * so no client can make the VMM allocate without bound. Output goes to a
 * per-client buffer flushed as the socket takes it (EPOLLOUT while there is
 * a backlog); a client that lets 1 MiB pile up is dropped, because the
 * event loop must never block on a client that does not read.
 *
 * A failing client is only marked dead where the failure is seen (possibly
 * while broadcasting an event from inside another client's request); dead
 * clients are freed at the end of each loop callback, when nothing on the
 * stack points at them.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "migration/migration.h"
#include "vmm/control_internal.h"
#include "vmm/control_migration.h"
#include "vmm/log.h"
#include "vmm/sock_path.h"
#include "vmm/vm.h"

/* ---- output ---- */

static void client_watch(struct control_client *c, bool out)
{
	if (c->want_out == out)
		return;
	c->want_out = out;
	event_loop_mod(&c->ctl->vm->loop, c->fd, EPOLLIN | (out ? EPOLLOUT : 0));
}

static void client_flush(struct control_client *c)
{
	size_t off = 0;
	ssize_t n;

	while (off < c->out_len && !c->dead) {
		n = send(c->fd, c->out + off, c->out_len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0)
			off += (size_t)n;
		else if (n < 0 && errno == EINTR)
			continue;
		else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		else
			c->dead = true;
	}
	memmove(c->out, c->out + off, c->out_len - off);
	c->out_len -= off;
	if (!c->dead)
		client_watch(c, c->out_len > 0);
}

static int client_queue(struct control_client *c, const char *s)
{
	size_t len = strlen(s), need = c->out_len + len + 1, cap;
	char *p;

	if (need > CONTROL_OUT_MAX) {
		pr_warn("control: dropping a client that does not read its replies");
		c->dead = true;
		return -1;
	}
	if (need > c->out_cap) {
		cap = need * 2 > CONTROL_OUT_MAX ? CONTROL_OUT_MAX : need * 2;
		p = realloc(c->out, cap);
		if (!p) {
			c->dead = true;
			return -1;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, s, len);
	c->out[c->out_len + len] = '\n';
	c->out_len = need;
	return 0;
}

/* Queue one JSON line and push it out; drops `obj`'s reference. */
static void client_send(struct control_client *c, struct json_object *obj)
{
	if (!obj)
		c->dead = true;         /* out of memory building the reply */
	else if (!c->dead && client_queue(c, qmp_to_string(obj)) == 0)
		client_flush(c);
	json_object_put(obj);
}

void control_event(struct vm *vm, const char *name, struct json_object *data)
{
	struct control *ctl = vm->control;
	struct json_object *ev = qmp_event(name, data);

	for (int i = 0; ctl && ev && i < CONTROL_MAX_CLIENTS; i++) {
		struct control_client *c = ctl->clients[i];

		if (c && !c->dead && client_queue(c, qmp_to_string(ev)) == 0)
			client_flush(c);
	}
	json_object_put(ev);
}

/* ---- input ---- */

static bool blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!strchr(" \t\r", s[i]))
			return false;
	return true;
}

struct json_object *control_execute(struct control *ctl, const char *line, size_t len)
{
	return qmp_dispatch(control_commands, ctl, line, len, NULL);
}

static void client_error_close(struct control_client *c, const char *desc)
{
	struct json_object *reply = json_object_new_object();
	struct json_object *err = json_object_new_object();

	json_object_object_add(err, "class", json_object_new_string(QMP_ERR_GENERIC));
	json_object_object_add(err, "desc", json_object_new_string(desc));
	json_object_object_add(reply, "error", err);
	client_send(c, reply);
	c->dead = true;
}

/* Run every complete line in the input buffer. */
static void client_process(struct control_client *c)
{
	size_t start = 0;
	char *nl;

	while (!c->dead && !c->busy && (nl = memchr(c->in + start, '\n', c->in_len - start))) {
		size_t len = (size_t)(nl - (c->in + start));
		struct json_object *reply;

		if (!blank(c->in + start, len)) {
			c->ctl->current = c;
			reply = qmp_dispatch(control_commands, c->ctl, c->in + start, len, &c->pending);
			c->ctl->current = NULL;
			if (c->pending.deferred)
				c->busy = true;         /* control_answer() sends it */
			else
				client_send(c, reply);
		}
		start += len + 1;
	}
	memmove(c->in, c->in + start, c->in_len - start);
	c->in_len -= start;
	if (!c->dead && c->in_len == sizeof(c->in))
		client_error_close(c, "request line longer than 65536 bytes");
}

static void client_read(struct control_client *c)
{
	ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);

	if (n > 0) {
		c->in_len += (size_t)n;
		client_process(c);
	} else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
		c->dead = true;
	}
}

static void client_free(struct control_client *c)
{
	if (c->busy && c->pending_cancel)
		c->pending_cancel(c->pending_job);
	json_object_put(c->pending.id);
	event_loop_del(&c->ctl->vm->loop, c->fd);
	close(c->fd);
	free(c->out);
	free(c);
}

/* A dead client with a deferred answer pending is freed once it comes. */
static void control_sweep(struct control *ctl)
{
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		if (ctl->clients[i] && ctl->clients[i]->dead && !ctl->clients[i]->busy) {
			client_free(ctl->clients[i]);
			ctl->clients[i] = NULL;
		}
	}
}

static void on_client(void *opaque, uint32_t events)
{
	struct control_client *c = opaque;
	struct control *ctl = c->ctl;

	if (events & EPOLLOUT)
		client_flush(c);
	if (!c->dead && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		client_read(c);
	control_sweep(ctl);
}

/* ---- answers that come later ---- */

struct control_client *control_defer(struct qmp_request *req, void (*cancel)(void *job),
				     void *job)
{
	struct control *ctl = req->opaque;
	struct control_client *c = ctl->current;

	if (!c)
		return NULL;
	qmp_defer(req);
	c->pending_cancel = cancel;
	c->pending_job = job;
	return c;
}

void control_answer(struct control_client *c, struct json_object *ret, const char *err)
{
	struct json_object *reply;

	if (err) {
		json_object_put(ret);
		qmp_error(&c->pending, QMP_ERR_GENERIC, "%s", err);
	} else {
		c->pending.ret = ret;
	}
	reply = qmp_finish(&c->pending);
	c->busy = false;
	c->pending_cancel = NULL;
	c->pending_job = NULL;
	if (c->dead)
		json_object_put(reply);
	else
		client_send(c, reply);
	if (!c->dead)
		client_process(c);      /* requests that waited behind it */
	control_sweep(c->ctl);
}

/* ---- connections ---- */

static int control_slot(struct control *ctl)
{
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (!ctl->clients[i])
			return i;
	return -1;
}

static void control_refuse(int fd)
{
	static const char msg[] = "{\"error\":{\"class\":\"GenericError\","
				  "\"desc\":\"too many control clients\"}}\n";

	/* Best effort: the socket buffer of a fresh connection takes this. */
	if (send(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		pr_debug("control: refusing a client: %s", strerror(errno));
	close(fd);
}

/* Only the VM's own user (after --user, that one) or root may steer it:
 * the socket's mode says so too, but a file mode can be changed. */
static bool control_peer_allowed(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	if (cred.uid == 0 || cred.uid == geteuid())
		return true;
	pr_warn_ratelimited("control: refusing a client of uid %u (pid %d): only uid %u or root "
			    "may use this VM's socket", (unsigned)cred.uid, (int)cred.pid,
			    (unsigned)geteuid());
	return false;
}

static void control_add_client(struct control *ctl, int fd)
{
	struct control_client *c;
	int slot = control_slot(ctl);

	if (!control_peer_allowed(fd)) {
		close(fd);
		return;
	}
	if (slot < 0) {
		control_refuse(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c || event_loop_add(&ctl->vm->loop, fd, EPOLLIN, on_client, c) < 0) {
		free(c);
		control_refuse(fd);
		return;
	}
	c->ctl = ctl;
	c->fd = fd;
	ctl->clients[slot] = c;
	client_send(c, qmp_greeting());
}

static void on_accept(void *opaque, uint32_t events)
{
	struct control *ctl = opaque;
	int fd;

	(void)events;
	for (;;) {
		fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				pr_warn_ratelimited("control: accept: %s", strerror(errno));
			break;
		}
		control_add_client(ctl, fd);
	}
	control_sweep(ctl);
}

/* ---- the listening socket ---- */

/* The path to bind: --api-sock, or the default one (its folder made 0700).
 * 1 when the default folder is unusable: the VM then runs without a socket. */
static int control_pick_path(struct vm *vm, char *path, size_t size)
{
	char dir[CONTROL_PATH_MAX], pid[16];
	struct stat st;

	if (vm->cfg.api_sock) {
		if (strlen(vm->cfg.api_sock) >= CONTROL_PATH_MAX) {
			pr_err("--api-sock '%s': longer than %d bytes", vm->cfg.api_sock,
			       CONTROL_PATH_MAX - 1);
			return -1;
		}
		snprintf(path, size, "%s", vm->cfg.api_sock);
		return 0;
	}
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if (control_default_path(vm->cfg.name ? vm->cfg.name : pid, path, size) < 0 ||
	    control_sock_dir(dir, sizeof(dir)) < 0)
		return -1;
	/* A user who did not ask for a socket should not lose the VM over it. */
	errno = 0;
	if ((mkdir(dir, 0700) < 0 && errno != EEXIST) || lstat(dir, &st) < 0 ||
	    !S_ISDIR(st.st_mode)) {
		pr_warn("no control socket: cannot use %s: %s (set XDG_RUNTIME_DIR or "
			"give --api-sock)", dir, errno ? strerror(errno) : "not a folder");
		return 1;
	}
	/* Someone else's folder, or one others may write to, could hand our
	 * clients their socket instead of ours. */
	if (st.st_uid != geteuid() || (st.st_mode & 0777) != 0700) {
		pr_warn("no control socket: %s is not ours with mode 0700 (owner %u, mode %03o; "
			"set XDG_RUNTIME_DIR or give --api-sock)", dir, (unsigned)st.st_uid,
			(unsigned)(st.st_mode & 0777));
		return 1;
	}
	control_sweep_stale(dir);
	return 0;
}

/* Clear the way for bind(): only a stale socket may be removed. */
static int control_claim(const char *path)
{
	if (sock_path_probe(path) == SOCK_LIVE) {
		pr_err("control socket %s: another VM is running there (use another "
		       "--api-sock or --name)", path);
		return -1;
	}
	return sock_path_claim(path, "control socket");
}

static int control_listen(struct control *ctl, const char *path)
{
	struct sockaddr_un sun;
	struct stat st;
	bool bound = false;
	mode_t old;
	int fd, ret;

	if (control_claim(path) < 0 || sock_path_addr(path, &sun) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto err;
	/* The socket is the VM's steering wheel: owner only, from the start
	 * (a chmod after bind would leave a window). */
	old = umask(0177);
	ret = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	bound = ret == 0;
	if (ret < 0 || listen(fd, CONTROL_MAX_CLIENTS) < 0 || stat(path, &st) < 0)
		goto err;
	/* --user: the socket is that user's, to use and to remove. */
	if (ctl->vm->cfg.lockdown.user_set &&
	    chown(path, ctl->vm->cfg.lockdown.uid, ctl->vm->cfg.lockdown.gid) < 0)
		goto err;
	ctl->listen_fd = fd;
	ctl->dev = st.st_dev;
	ctl->ino = st.st_ino;
	snprintf(ctl->path, sizeof(ctl->path), "%s", path);
	ctl->base = strrchr(ctl->path, '/');
	if (ctl->base) {
		char dir[CONTROL_PATH_MAX];

		snprintf(dir, sizeof(dir), "%.*s", (int)(ctl->base - ctl->path), ctl->path);
		ctl->dir_fd = open(dir[0] ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
		ctl->base++;
	} else {
		ctl->dir_fd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
		ctl->base = ctl->path;
	}
	return 0;
err:
	pr_err("control socket %s: %s", path, strerror(errno));
	if (bound)
		unlink(path);
	if (fd >= 0)
		close(fd);
	return -1;
}

static void control_unlink(struct control *ctl)
{
	struct stat st;

	/* Someone may have replaced the file since: leave theirs alone. Through
	 * the folder's fd, which still works after --chroot. */
	if (ctl->dir_fd < 0)
		return;
	if (fstatat(ctl->dir_fd, ctl->base, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    st.st_dev == ctl->dev && st.st_ino == ctl->ino)
		unlinkat(ctl->dir_fd, ctl->base, 0);
}

struct control *control_create(struct vm *vm)
{
	struct control *ctl = calloc(1, sizeof(*ctl));

	if (!ctl)
		return NULL;
	ctl->vm = vm;
	ctl->user_paused = vm->cfg.start_paused;        /* `cont` releases --paused */
	if (vm->mig)
		migration_set_event_cb(vm, control_migration_event);
	ctl->listen_fd = -1;
	ctl->dir_fd = -1;
	return ctl;
}

void control_free(struct control *ctl)
{
	if (!ctl)
		return;
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (ctl->clients[i])
			client_free(ctl->clients[i]);
	if (ctl->listen_fd >= 0) {
		event_loop_del(&ctl->vm->loop, ctl->listen_fd);
		control_unlink(ctl);
		close(ctl->listen_fd);
	}
	if (ctl->dir_fd >= 0)
		close(ctl->dir_fd);
	free(ctl);
}

int control_init(struct vm *vm)
{
	char path[CONTROL_PATH_MAX];
	struct control *ctl;
	int ret;

	ret = control_pick_path(vm, path, sizeof(path));
	if (ret)
		return ret < 0 ? -1 : 0;
	ctl = control_create(vm);
	if (!ctl)
		return -1;
	if (control_listen(ctl, path) < 0)
		goto err;
	if (event_loop_add(&vm->loop, ctl->listen_fd, EPOLLIN, on_accept, ctl) < 0)
		goto err;
	vm->control = ctl;
	pr_info("control socket: %s", ctl->path);
	return 0;
err:
	control_free(ctl);
	return -1;
}

static struct json_object *shutdown_data(struct control *ctl)
{
	struct json_object *data = json_object_new_object();
	const char *reason;
	bool guest = false;

	switch (atomic_load(&ctl->vm->stop_reason)) {
	case VM_STOP_POWEROFF:
		reason = "guest-shutdown";
		guest = true;
		break;
	case VM_STOP_RESET:
		reason = "guest-reset";
		guest = true;
		break;
	case VM_STOP_QUIT:
		reason = ctl->quit ? "host-qmp-quit" : "host-signal";
		break;
	default:
		reason = "host-error";
		break;
	}
	json_object_object_add(data, "guest", json_object_new_boolean(guest));
	json_object_object_add(data, "reason", json_object_new_string(reason));
	return data;
}

void control_destroy(struct vm *vm)
{
	struct control *ctl = vm->control;

	if (!ctl)
		return;
	/* Remove the path first: once a client sees EOF, the name is free. */
	control_unlink(ctl);
	if (atomic_load(&vm->stop_reason))
		control_event(vm, "SHUTDOWN", shutdown_data(ctl));
	vm->control = NULL;
	control_free(ctl);
}
