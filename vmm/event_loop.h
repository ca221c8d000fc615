/* SPDX-License-Identifier: MIT */
/*
 * The main thread's epoll loop. Callbacks run on the main thread, one at a
 * time, so state touched only from callbacks needs no locking.
 */
#ifndef VMM_EVENT_LOOP_H
#define VMM_EVENT_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#define EVENT_LOOP_MAX 64

typedef void (*event_cb_t)(void *opaque, uint32_t events);

struct event_handler {
	int fd;
	event_cb_t cb;
	void *opaque;
};

struct event_loop {
	int epfd;
	bool stop;
	struct event_handler handlers[EVENT_LOOP_MAX];
};

int event_loop_init(struct event_loop *loop);
void event_loop_destroy(struct event_loop *loop);
/* 0, or -errno (-EPERM, unlogged, for fds epoll cannot watch). */
int event_loop_add(struct event_loop *loop, int fd, uint32_t events, event_cb_t cb, void *opaque);
/* Change what a registered fd is watched for (thread-safe: epoll_ctl only). */
int event_loop_mod(struct event_loop *loop, int fd, uint32_t events);
void event_loop_del(struct event_loop *loop, int fd);
/* One epoll_wait and its callbacks: the number of events, or -1. */
int event_loop_run_once(struct event_loop *loop, int timeout_ms);
/* Dispatch until loop->stop is set by a callback. -1 on epoll failure. */
int event_loop_run(struct event_loop *loop);

#endif
