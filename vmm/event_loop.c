// SPDX-License-Identifier: MIT
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "vmm/event_loop.h"
#include "vmm/log.h"

int event_loop_init(struct event_loop *loop)
{
	memset(loop, 0, sizeof(*loop));
	for (int i = 0; i < EVENT_LOOP_MAX; i++)
		loop->handlers[i].fd = -1;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		pr_err("epoll_create1: %s", strerror(errno));
		return -1;
	}
	return 0;
}

void event_loop_destroy(struct event_loop *loop)
{
	if (loop->epfd >= 0)
		close(loop->epfd);
	loop->epfd = -1;
}

int event_loop_add(struct event_loop *loop, int fd, uint32_t events, event_cb_t cb, void *opaque)
{
	struct epoll_event ev = { .events = events };
	int i;

	for (i = 0; i < EVENT_LOOP_MAX; i++)
		if (loop->handlers[i].fd < 0)
			break;
	if (i == EVENT_LOOP_MAX) {
		pr_err("event loop: too many handlers");
		return -1;
	}
	ev.data.u32 = (uint32_t)i;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		/* EPERM: a regular file or /dev/null; the caller decides. */
		if (errno != EPERM)
			pr_err("epoll_ctl(add %d): %s", fd, strerror(errno));
		return -errno;
	}
	loop->handlers[i] = (struct event_handler){ fd, cb, opaque };
	return 0;
}

int event_loop_mod(struct event_loop *loop, int fd, uint32_t events)
{
	for (int i = 0; i < EVENT_LOOP_MAX; i++) {
		struct epoll_event ev = { .events = events, .data.u32 = (uint32_t)i };

		if (loop->handlers[i].fd == fd)
			return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev);
	}
	return -1;
}

void event_loop_del(struct event_loop *loop, int fd)
{
	for (int i = 0; i < EVENT_LOOP_MAX; i++) {
		if (loop->handlers[i].fd != fd)
			continue;
		epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
		loop->handlers[i].fd = -1;
	}
}

int event_loop_run_once(struct event_loop *loop, int timeout_ms)
{
	struct epoll_event evs[16];
	int n = epoll_wait(loop->epfd, evs, 16, timeout_ms);

	if (n < 0 && errno == EINTR)
		return 0;
	if (n < 0) {
		pr_err("epoll_wait: %s", strerror(errno));
		return -1;
	}
	for (int i = 0; i < n && !loop->stop; i++) {
		struct event_handler *h = &loop->handlers[evs[i].data.u32];

		/* A callback may have removed this handler already. */
		if (h->fd >= 0)
			h->cb(h->opaque, evs[i].events);
	}
	return n;
}

int event_loop_run(struct event_loop *loop)
{
	while (!loop->stop)
		if (event_loop_run_once(loop, -1) < 0)
			return -1;
	return 0;
}
