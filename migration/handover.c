// SPDX-License-Identifier: MIT
/*
 * The handover of a live migration: READY has come, the VM is frozen and
 * its disks flushed. Exactly one side may run the guest, so GO is the point
 * of no return only as far as the destination may have acted on it:
 *
 *   the peer is gone before GO      it never ran: resume here
 *   GO could not be written         it never arrived whole, so the
 *                                   destination cannot run: take the disks
 *                                   and taps back and resume here
 *   RUNNING                         done: the guest runs over there
 *   ERROR after GO                  the destination will not run it (it
 *                                   could not take a disk or a tap, or was
 *                                   told to quit): take back and resume
 *   silence (EOF, reset, stall,     it may run there and we cannot know:
 *   garbage)                        stay paused and say so ("stranded");
 *                                   `cont {"force": true}` is the operator's
 *                                   override once they made sure it does not
 *
 * The migration thread decides; the main thread, joining it, takes the
 * backends back (the event loop is its alone) and only then says "failed",
 * so no client sees a failed migration while the guest is still paused. A
 * destination that fails after GO lets go of what it took before it
 * answers ERROR, so the source can lock its images again at once; we still
 * retry for a moment, in case it is slower than its word.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "migration/handover.h"
#include "migration/vmstate.h"
#include "migration/stream.h"
#include "vmm/failpoint.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define REATTACH_TRIES    20
#define REATTACH_WAIT_MS  50

static int parse_reply(struct chan *in, struct record rec, uint32_t *code, char *msg,
		       size_t msglen)
{
	struct stream_reply r;

	if (rec.length < sizeof(r)) {
		pr_err("%s: a reply of %llu bytes, too short", in->name, (unsigned long long)rec.length);
		record_free(&rec);
		return -1;
	}
	memcpy(&r, rec.payload, sizeof(r));
	*code = r.code;
	stream_reply_text(&rec, msg, msglen);
	record_free(&rec);
	return 0;
}

int handover_read_reply(struct chan *in, uint32_t *code, char *msg, size_t msglen)
{
	struct record rec;

	do {
		if (msglen)
			msg[0] = 0;
		if (record_read(in, &rec, REC_REPLY) < 0 ||
		    parse_reply(in, rec, code, msg, msglen) < 0)
			return -1;
	} while (*code == REPLY_RECEIVING);
	return 0;
}

int handover_wait_receiving(struct chan *in, unsigned timeout_ms)
{
	struct pollfd p = { .fd = in->fd, .events = POLLIN };
	struct record rec;
	uint32_t code;
	char msg[512];

	if (!chan_pending(in) && poll(&p, 1, (int)timeout_ms) <= 0) {
		pr_err("%s: the destination did not start receiving within %u ms", in->name,
		       timeout_ms);
		return -1;
	}
	if (record_read(in, &rec, REC_REPLY) < 0 ||
	    parse_reply(in, rec, &code, msg, sizeof(msg)) < 0)
		return -1;
	if (code == REPLY_RECEIVING)
		return 0;
	if (code == REPLY_ERROR)
		pr_err("destination refused the VM: %s", msg);
	else
		pr_err("%s: reply %u where RECEIVING belongs", in->name, code);
	return -1;
}

/* After GO in postcopy the destination may ask for pages before it says
 * RUNNING (its fault thread runs from GO on): keep those for the server. */
static int read_confirmation(struct migration *m, struct chan *in, uint32_t *code, char *msg,
			     size_t msglen)
{
	struct record rec;

	if (!m->postcopy)
		return handover_read_reply(in, code, msg, msglen);
	if (msglen)
		msg[0] = 0;
	for (;;) {
		if (record_read(in, &rec, 0) < 0)
			return -1;
		if (rec.type != REC_PAGE_REQ)
			break;
		for (uint64_t i = 0; i < rec.length / 8 && m->pc_nr_early < MIG_EARLY_REQUESTS; i++)
			memcpy(&m->pc_early[m->pc_nr_early++], (uint8_t *)rec.payload + i * 8, 8);
		record_free(&rec);
	}
	if (rec.type != REC_REPLY) {
		pr_err("%s: a %s record where a reply belongs", in->name, record_type_name(rec.type));
		record_free(&rec);
		return -1;
	}
	return parse_reply(in, rec, code, msg, msglen);
}

/* The destination closed its end (it died after READY, or gave up). */
static bool peer_gone(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };
	char c;

	if (poll(&p, 1, 0) <= 0)
		return false;
	if (p.revents & (POLLHUP | POLLERR | POLLRDHUP))
		return true;
	/* Readable: an ERROR it sent before going is not "gone" by itself. */
	return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);   /* waiting out a peer that is letting go, not syncing */
}

/* The disks and taps back, then the guest runs again here. */
int handover_take_back(struct vm *vm)
{
	int ret = -1;

	for (unsigned i = 0; i < REATTACH_TRIES && ret < 0; i++) {
		if (i)
			sleep_ms(REATTACH_WAIT_MS);
		ret = vm_attach_backends(vm);
	}
	if (ret < 0)
		return -1;
	vmstate_thaw(vm);
	return 0;
}

/* The main thread takes the backends back when it joins us. */
static int resume_here(struct migration *m, const char *why)
{
	m->take_back = true;
	migration_error(m, "%s; the guest resumes here", why);
	return -1;
}

int handover(struct migration *m, struct chan *out, struct chan *in)
{
	char msg[512];
	uint32_t code;

	/* Tests: give a destination that kills itself after READY time to go. */
	if (failpoint("src-wait-peer-before-go")) {
		struct pollfd p = { .fd = out->fd, .events = POLLRDHUP };

		poll(&p, 1, 10000);
	}
	if (peer_gone(out->fd)) {
		/* Whatever it said last, it did not wait for GO: it never runs. */
		vmstate_thaw(m->vm);
		if (handover_read_reply(in, &code, msg, sizeof(msg)) == 0 && code == REPLY_ERROR)
			migration_error(m, "the destination gave up after READY, before GO: %s; "
					"the guest resumed here", msg);
		else
			migration_error(m, "the destination went away after READY, before GO: "
					"the guest resumed here");
		return -1;
	}
	vm_release_backends(m->vm);
	failpoint_kill("src-kill-before-go");
	if (failpoint("src-go-write-fail")) {
		errno = EPIPE;
		return resume_here(m, "GO could not be sent (failpoint src-go-write-fail)");
	}
	if (record_write(out, REC_GO, 0, NULL, 0) < 0)
		return resume_here(m, "GO could not be sent whole, so the destination cannot run "
				   "the guest");
	m->go_sent = true;
	if (read_confirmation(m, in, &code, msg, sizeof(msg)) < 0) {
		migration_strand(m, "GO was sent but the destination did not confirm that it runs "
				 "the guest: it may run there, so this VM stays paused (make sure it "
				 "does not before `cont {\"force\": true}`)");
		return -1;
	}
	if (code == REPLY_RUNNING)
		return 0;
	if (code == REPLY_ERROR) {
		char why[700];

		snprintf(why, sizeof(why), "the destination refused the guest after GO: %s", msg);
		return resume_here(m, why);
	}
	migration_strand(m, "GO was sent and the destination answered %u, not RUNNING: it may "
			 "run the guest, so this VM stays paused (make sure it does not before "
			 "`cont {\"force\": true}`)", code);
	return -1;
}
