// SPDX-License-Identifier: MIT
#include <stdlib.h>
#include <string.h>

#include "migration/ram_pipe.h"
#include "vmm/log.h"
#include "vmm/lockdown.h"

static void *applier(void *arg)
{
	struct ram_pipe *p = arg;

	pthread_setname_np(pthread_self(), "ram-applier");
	lockdown_thread(THREAD_APPLIER);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		void *buf;
		int ret;

		while (p->applied == p->submitted && !p->stop)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->applied == p->submitted)
			break;
		buf = p->buf[p->applied % RAM_PIPE_BUFS];
		pthread_mutex_unlock(&p->lock);
		ret = p->failed ? 0 : ram_batch_apply(p->l, buf);
		pthread_mutex_lock(&p->lock);
		if (ret < 0)
			p->failed = true;
		p->applied++;
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int ram_pipe_start(struct ram_pipe *p, struct ram_loader *l, size_t cap)
{
	memset(p, 0, sizeof(*p));
	p->l = l;
	p->cap = cap;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	for (unsigned i = 0; i < RAM_PIPE_BUFS; i++) {
		p->buf[i] = malloc(cap);
		if (!p->buf[i])
			goto err;
	}
	if (pthread_create(&p->thread, NULL, applier, p))
		goto err;
	p->running = true;
	return 0;
err:
	pr_err("cannot start the RAM applier: out of memory or threads");
	ram_pipe_finish(p);
	return -1;
}

void *ram_pipe_buffer(struct ram_pipe *p)
{
	bool failed;

	pthread_mutex_lock(&p->lock);
	while (p->submitted - p->applied == RAM_PIPE_BUFS - 1 && !p->failed)
		pthread_cond_wait(&p->cond, &p->lock);
	failed = p->failed;
	pthread_mutex_unlock(&p->lock);
	if (failed) {
		if (!p->reported)
			pr_err("%s", p->l->error);
		p->reported = true;
		return NULL;
	}
	return p->buf[p->submitted % RAM_PIPE_BUFS];
}

void ram_pipe_submit(struct ram_pipe *p)
{
	pthread_mutex_lock(&p->lock);
	p->submitted++;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

int ram_pipe_drain(struct ram_pipe *p)
{
	bool failed;

	pthread_mutex_lock(&p->lock);
	while (p->applied != p->submitted)
		pthread_cond_wait(&p->cond, &p->lock);
	failed = p->failed;
	pthread_mutex_unlock(&p->lock);
	if (failed && !p->reported)
		pr_err("%s", p->l->error);
	p->reported |= failed;
	return failed ? -1 : 0;
}

int ram_pipe_finish(struct ram_pipe *p)
{
	bool failed;

	if (p->running) {
		pthread_mutex_lock(&p->lock);
		p->stop = true;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->thread, NULL);
		p->running = false;
		if (p->failed && !p->reported)
			pr_err("%s", p->l->error);
		p->reported = true;
	}
	failed = p->failed;
	for (unsigned i = 0; i < RAM_PIPE_BUFS; i++) {
		free(p->buf[i]);
		p->buf[i] = NULL;
	}
	return failed ? -1 : 0;
}
