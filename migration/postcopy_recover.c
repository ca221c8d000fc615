// SPDX-License-Identifier: MIT
/*
 * Postcopy, the destination: recovery after a broken link (migrate-recover).
 *
 * A new connection from the source, which first names the session of the
 * switch; we answer with the pages we still lack, so only those travel
 * again, and ask again for the pages threads are waiting on. A failure on
 * the way (or a stranger on the address) leaves us paused as before, ready
 * for another migrate-recover. Meanwhile the fault thread goes on: requests
 * it cannot send are sent again here.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "migration/migration.h"
#include "migration/postcopy_dst.h"
#include "migration/postcopy_dst_priv.h"
#include "migration/tls.h"
#include "migration/uri.h"
#include "vmm/log.h"
#include "vmm/vm.h"
#include "vmm/lockdown.h"

#define ACCEPT_POLL_MS 200

/* The source's new connection; with --tls-creds one that passed the
 * handshake (*tls), others are turned away and we listen on. */
static int accept_source(struct postcopy_dst *pd, struct tls_link **tls)
{
	struct timeval tv = { .tv_sec = (time_t)pd->rx->timeout_s };
	char why[512];
	int fd = -1;

	*tls = NULL;
	while (fd < 0 && !atomic_load(&pd->stopping)) {
		struct pollfd p = { .fd = pd->lfd, .events = POLLIN };

		if (poll(&p, 1, ACCEPT_POLL_MS) <= 0)
			continue;
		fd = accept4(pd->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0 && errno != EINTR && errno != EAGAIN)
			break;
		if (fd < 0 || !pd->creds)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		*tls = tls_handshake(fd, pd->creds, NULL, why, sizeof(why));
		if (!*tls) {
			pr_warn("incoming migration: a connection to the recovery address: %s; "
				"still listening", why);
			close(fd);
			fd = -1;
		}
	}
	return fd;
}

/* The new connection (and its TLS session, or NULL) replaces the broken
 * one for every writer. */
static void swap_connection(struct postcopy_dst *pd, int fd, struct tls_link *t)
{
	struct timeval tv = { .tv_sec = (time_t)pd->rx->timeout_s };
	int one = 1, old;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pthread_mutex_lock(&pd->rx->send_lock);
	old = pd->rx->c->fd;
	chan_init(pd->rx->c, fd, false, 0, "incoming migration (recovery)");
	pd->rx->c->tls = t;
	pthread_mutex_unlock(&pd->rx->send_lock);
	if (old >= 0)
		close(old);
	pd->recovery_tls = t;   /* the old one stays: a reader may still hold it */
}

/* The source's header and the session it resumes. 0, or -1 (printed). */
static int check_resume(struct postcopy_dst *pd)
{
	struct postcopy_resume r;
	struct stream_header h;
	struct record rec;
	int ret;

	if (record_read(pd->rx->c, &rec, REC_HEADER) < 0)
		return -1;
	ret = stream_header_check(&rec, &h);
	record_free(&rec);
	if (ret < 0 || record_read(pd->rx->c, &rec, REC_RESUME) < 0)
		return -1;
	ret = rec.length == sizeof(r) ? 0 : -1;
	if (ret == 0)
		memcpy(&r, rec.payload, sizeof(r));
	record_free(&rec);
	if (ret < 0 || r.session != pd->session) {
		pr_err("incoming migration: a resume for another migration: refused");
		stream_rx_reply(pd->rx, REPLY_ERROR, "not the postcopy this destination waits for");
		return -1;
	}
	return 0;
}

/* What we still lack, then again what threads wait on. */
static int send_missing(struct postcopy_dst *pd)
{
	struct guest_mem *mem = &pd->vm->mem;
	uint64_t pages = mem->ram_size / PAGE, words = (pages + 63) / 64, req[PAGE_REQ_MAX];
	struct postcopy_switch *sw = calloc(1, sizeof(*sw) + words * 8);
	uint64_t *map = (uint64_t *)(sw + 1);
	unsigned n = 0;
	int ret;

	if (!sw)
		return -1;
	*sw = (struct postcopy_switch){ .pages = pages, .session = pd->session };
	for (unsigned i = 0; i < mem->nr_regions; i++)
		for (uint64_t p = 0; p < mem->regions[i].size / PAGE; p++)
			if (pcd_is_needed(pd, i, p)) {
				map[(pd->base[i] + p) / 64] |= 1ULL << ((pd->base[i] + p) % 64);
				sw->needed++;
			}
	ret = stream_rx_send(pd->rx, REC_POSTCOPY, sw, sizeof(*sw) + words * 8);
	free(sw);
	for (unsigned i = 0; ret == 0 && i < mem->nr_regions; i++)
		for (uint64_t p = 0; ret == 0 && p < mem->regions[i].size / PAGE; p++) {
			if (!atomic_load(&pd->asked_us[pd->base[i] + p]) || !pcd_is_needed(pd, i, p))
				continue;
			req[n++] = mem->regions[i].gpa + p * PAGE;
			if (n == PAGE_REQ_MAX) {
				ret = stream_rx_send(pd->rx, REC_PAGE_REQ, req, n * sizeof(*req));
				n = 0;
			}
		}
	if (ret == 0 && n)
		ret = stream_rx_send(pd->rx, REC_PAGE_REQ, req, n * sizeof(*req));
	return ret;
}

static void *recover_thread(void *arg)
{
	struct postcopy_dst *pd = arg;
	struct tls_link *t;
	int fd;

	pthread_setname_np(pthread_self(), "postcopy-rx");
	lockdown_thread(THREAD_POSTCOPY_RX);
	fd = accept_source(pd, &t);
	close(pd->lfd);
	pd->lfd = -1;
	if (fd < 0) {
		pcd_paused(pd, "no source connected for the recovery");
		return NULL;
	}
	swap_connection(pd, fd, t);
	if (check_resume(pd) < 0 || send_missing(pd) < 0) {
		pcd_paused(pd, "the recovery's connection failed before pages flowed again");
		return NULL;
	}
	migration_set_status(pd->vm->mig, MIG_POSTCOPY_ACTIVE);
	pr_info("incoming migration: postcopy resumed: %llu pages still to come",
		(unsigned long long)atomic_load(&pd->left));
	pcd_receive_pages(pd);
	return NULL;
}

int postcopy_dst_recover(struct postcopy_dst *pd, const char *uri, char *bound, size_t blen,
			 char *err, size_t errlen)
{
	int status = atomic_load(&pd->vm->mig->status);
	struct mig_uri u;

	if (status != MIG_POSTCOPY_PAUSED) {
		snprintf(err, errlen, "migrate-recover: no paused postcopy here (status %s)",
			 migration_status_name(status));
		return -1;
	}
	if (uri_parse(uri, &u, err, errlen) < 0)
		return -1;
	if (u.kind == URI_FILE) {
		snprintf(err, errlen, "migrate-recover: a postcopy resumes over tcp: or unix:");
		return -1;
	}
	if (pd->joinable)
		pthread_join(pd->thread, NULL);
	pd->joinable = false;
	pd->lfd = uri_listen(&u, bound, blen);
	if (pd->lfd < 0) {
		snprintf(err, errlen, "migrate-recover: cannot listen on %s (see stderr)", uri);
		return -1;
	}
	migration_set_status(pd->vm->mig, MIG_POSTCOPY_RECOVER);
	if (pthread_create(&pd->thread, NULL, recover_thread, pd)) {
		close(pd->lfd);
		pd->lfd = -1;
		migration_set_status(pd->vm->mig, MIG_POSTCOPY_PAUSED);
		snprintf(err, errlen, "migrate-recover: cannot start a thread");
		return -1;
	}
	pd->joinable = true;
	fprintf(stderr, "minivmm: incoming migration: recovery listening on %s\n", bound);
	return 0;
}
