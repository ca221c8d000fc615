// SPDX-License-Identifier: MIT
/*
 * Exactly one side runs the guest (DESIGN.md, "Pause, switchover and
 * failure"): we answer READY only when everything arrived and checked out,
 * and run only after GO. Before that, every failure is one line on stderr,
 * the same text in an ERROR reply to the source (best effort: it may be
 * gone), and a non-zero exit: 2 when the stream or this host does not fit,
 * 1 when the connection failed.
 *
 * Host backends (disks, taps) are checked before READY without taking them
 * (the source still has them) and opened after GO. If that fails we let go
 * of whatever we took and answer ERROR: the source takes them back and
 * resumes. While we wait for GO the event loop runs, so SIGTERM or the
 * control socket's `quit` are heard: before GO either gives the incoming
 * migration up at once (ERROR to the source, which resumes); after RUNNING
 * they mean what they mean for any VM.
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "devices/virtio_mmio.h"
#include "migration/crc32c.h"
#include "migration/incoming.h"
#include "migration/incoming_peer.h"
#include "migration/incoming_stream.h"
#include "migration/machine.h"
#include "migration/migration.h"
#include "migration/postcopy_dst.h"
#include "migration/stream_rx.h"
#include "migration/tls.h"
#include "migration/uri.h"
#include "migration/vmstate.h"
#include "vmm/failpoint.h"
#include "vmm/log.h"

struct incoming {
	struct vm *vm;
	const struct vm_config *cmdline;
	struct vm_config cfg;   /* from the machine record: points into rx.machine */
	struct mig_uri uri;
	int fd;
	int lfd;                /* still listening, for the source's second connection */
	int urgent_fd;          /* that connection (postcopy's requested pages), or -1 */
	unsigned timeout_s;
	bool readable;          /* the connection has data (GO, we hope) */
	struct chan c;
	struct stream_rx rx;
	char err[1024];         /* the first error, for the ERROR reply */
	bool quit;              /* told to stop before GO: ERROR to the source, exit 0 */
	struct postcopy_dst *postcopy;  /* the source switched to postcopy */
	struct tls_creds *creds;        /* --tls-creds */
	struct tls_link *tls, *urgent_tls;      /* the two connections' sessions */
};

static void stop_postcopy(void *opaque)
{
	struct incoming *in = opaque;

	postcopy_dst_stop(in->postcopy);
	in->postcopy = NULL;
}

static int parse_timeout(unsigned *out)
{
	const char *s = getenv(INCOMING_TIMEOUT_ENV);
	char *end;
	unsigned long v;

	*out = INCOMING_TIMEOUT_DEFAULT;
	if (!s || !*s)
		return 0;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || !v || v > 86400) {
		pr_err("%s='%s': expected seconds, 1 to 86400", INCOMING_TIMEOUT_ENV, s);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

static int check_args(struct incoming *in, const char *uri)
{
	char err[256];

	if (uri_parse(uri, &in->uri, err, sizeof(err)) < 0) {
		pr_err("--incoming: %s", err);
		return -1;
	}
	if (in->cmdline->lazy) {
		pr_err("--lazy goes with --incoming file: (a stream's RAM arrives over the connection)");
		return -1;
	}
	/* Whoever connects first must not pick host files to open read-write. */
	if (in->cmdline->accept_backends && in->uri.kind == URI_TCP && !in->cmdline->tls_creds) {
		pr_err("--accept-backends with --incoming tcp: needs --tls-creds (an authenticated "
		       "source); or name the disks and taps with --disk/--net");
		return -1;
	}
	if (in->cmdline->tls_creds &&
	    !(in->creds = tls_creds_load(in->cmdline->tls_creds, TLS_DESTINATION)))
		return -1;
	return parse_timeout(&in->timeout_s);
}

/* Both directions bounded: a stalled source cannot hold us forever. */
static void set_timeouts(int fd, unsigned s)
{
	struct timeval tv = { .tv_sec = (time_t)s };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Every connection is named on stderr (a contract line, like `listening
 * on`); one that is no source (migration/incoming_peer.c) or, with
 * --tls-creds, fails the handshake is dropped before a record is read. */
static bool is_source(struct incoming *in, int fd, const char *what, struct tls_link **tls)
{
	char peer[128], why[512], desc[64];

	incoming_peer_name(fd, peer, sizeof(peer));
	fprintf(stderr, "minivmm: incoming migration: %s from %s\n", what, peer);
	*tls = NULL;
	if (in->creds) {
		set_timeouts(fd, in->timeout_s);
		*tls = tls_handshake(fd, in->creds, NULL, why, sizeof(why));
		if (*tls) {
			pr_info("incoming migration: %s authenticated (%s, %s)", peer,
				tls_creds_kind(in->creds), tls_describe(*tls, desc, sizeof(desc)));
			return true;
		}
	} else {
		const char *not = incoming_not_a_source(fd, in->timeout_s);

		if (!not)
			return true;
		snprintf(why, sizeof(why), "%s", not);
	}
	pr_warn("incoming migration: %s %s: not a migration source; still listening", peer, why);
	return false;
}

/* The `listening on` line is a contract (docs/cli.md): scripts wait for it
 * to learn the port, so it is printed whatever the verbosity. */
static int listen_accept(struct incoming *in)
{
	char bound[4200];
	int lfd, fd;

	lfd = uri_listen(&in->uri, bound, sizeof(bound));
	if (lfd < 0)
		return EXIT_USAGE;
	/* Bound (a port below 1024 takes a capability); now, before the first
	 * byte from the network, the receive phase's filter and capabilities. */
	incoming_lockdown(in->cmdline, NULL);
	fprintf(stderr, "minivmm: incoming migration: listening on %s\n", bound);
	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0 && errno == EINTR)
			continue;
		if (fd < 0 || is_source(in, fd, "connection", &in->tls))
			break;
		close(fd);
	}
	if (fd < 0) {
		pr_err("incoming migration: accept on %s: %s", bound, strerror(errno));
		close(lfd);
		return EXIT_VM_FAILURE;
	}
	in->lfd = lfd;          /* until the header says whether a second connection comes */
	set_timeouts(fd, in->timeout_s);
	in->fd = fd;
	return EXIT_OK;
}

/* One source only: no more connections. */
static void stop_listening(struct incoming *in)
{
	if (in->lfd < 0)
		return;
	close(in->lfd);
	in->lfd = -1;
	if (in->uri.kind == URI_UNIX)
		unlink(in->uri.path);
}

/* The source's second connection, which opens with a header saying so;
 * anything else that connects meanwhile is turned away. */
static int accept_urgent(struct incoming *in)
{
	uint64_t deadline = now_ns() + (uint64_t)in->timeout_s * 1000000000ULL;

	while (now_ns() < deadline) {
		struct pollfd p = { .fd = in->lfd, .events = POLLIN };
		struct stream_header h;
		struct record rec = { 0 };
		struct tls_link *t;
		struct chan c;
		int fd;

		if (poll(&p, 1, (int)((deadline - now_ns()) / 1000000) + 1) <= 0)
			continue;
		fd = accept4(in->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		if (!is_source(in, fd, "second connection", &t)) {
			close(fd);
			continue;
		}
		set_timeouts(fd, in->timeout_s);
		chan_init(&c, fd, false, 0, "incoming migration (second connection)");
		c.tls = t;
		if (record_read(&c, &rec, REC_HEADER) == 0 && stream_header_check(&rec, &h) == 0 &&
		    h.flags == FLAG_URGENT_HELLO) {
			record_free(&rec);
			in->urgent_fd = fd;
			in->urgent_tls = t;
			return 0;
		}
		record_free(&rec);
		tls_free(t);
		close(fd);
	}
	pr_err("incoming migration: the source announced a second connection that did not come");
	return -1;
}

static int rx_status(const struct incoming *in)
{
	return in->rx.io_error ? EXIT_VM_FAILURE : EXIT_USAGE;
}

/* Everything up to READY: machine, VM, RAM, state, all checked. */
static int receive(struct incoming *in)
{
	struct stream_rx *rx = &in->rx;
	int ret;

	if (stream_rx_open(rx) < 0)
		return rx_status(in);
	if ((rx->hdr.flags & FLAG_URGENT_CHANNEL) && accept_urgent(in) < 0)
		return EXIT_VM_FAILURE;
	stop_listening(in);
	if (machine_load(rx->machine.payload, rx->machine.length, in->cmdline,
			 in->cmdline->accept_backends, &in->cfg) < 0)
		return EXIT_USAGE;
	/* The source holds the disks and taps until it sends GO. */
	in->cfg.defer_backends = true;
	/* A live migration's pause is milliseconds, about what two hosts'
	 * clocks may disagree by: by default guest time just continues. */
	if (in->cfg.clock == GUEST_CLOCK_DEFAULT)
		in->cfg.clock = GUEST_CLOCK_CONTINUE;
	ret = vm_create(in->vm, &in->cfg);
	if (ret != EXIT_OK)
		return ret;
	/* A postcopy source freezes its VM only after this. */
	if ((rx->hdr.flags & FLAG_URGENT_CHANNEL) &&
	    stream_rx_reply(rx, REPLY_RECEIVING, NULL) < 0) {
		pr_err("incoming migration: cannot reply to the source: %s", strerror(errno));
		return EXIT_VM_FAILURE;
	}
	if (stream_rx_load(rx, &in->vm->mem) < 0)
		return rx_status(in);
	/* CPUID and TSC are checked against this host here, before READY. */
	if (vmstate_load(in->vm, rx->state.payload, rx->state.length) < 0)
		return EXIT_USAGE;
	/* Postcopy: stale pages dropped, RAM registered for faults. */
	if (rx->postcopy.payload) {
		in->postcopy = postcopy_dst_prepare(in->vm, rx);
		if (!in->postcopy)
			return EXIT_VM_FAILURE;
		in->vm->stop_hook = stop_postcopy;
		in->vm->stop_hook_opaque = in;
	}
	/* Whatever can still fail here (the control socket's path...) fails now:
	 * after GO, a failure would leave the guest running nowhere. */
	ret = vm_prepare_run(in->vm);
	if (ret != EXIT_OK)
		return ret;
	failpoint_kill("dst-kill-before-ready");
	if (failpoint("dst-error-before-ready")) {
		pr_err("incoming migration: failpoint dst-error-before-ready: refusing the stream");
		return EXIT_USAGE;
	}
	if (stream_rx_reply(&in->rx, REPLY_READY, NULL) < 0) {
		pr_err("incoming migration: cannot send READY to the source: %s", strerror(errno));
		return EXIT_VM_FAILURE;
	}
	failpoint_kill("dst-kill-after-ready");
	return EXIT_OK;
}

static void on_readable(void *opaque, uint32_t events)
{
	struct incoming *in = opaque;

	(void)events;
	in->readable = true;
}

/* Until GO is there to read, or we are told to stop, or the source's
 * silence times out (then stream_rx_wait_go() says so). */
static int wait_go_or_stop(struct incoming *in)
{
	struct vm *vm = in->vm;
	uint64_t deadline = now_ns() + (uint64_t)in->timeout_s * 1000000000ULL;
	int ret = EXIT_OK;

	in->readable = chan_pending(&in->c);    /* TLS may hold GO already */
	if (event_loop_add(&vm->loop, in->fd, EPOLLIN, on_readable, in) < 0)
		return EXIT_VM_FAILURE;
	pr_info("incoming migration: READY sent, waiting for GO");
	while (!in->readable && !atomic_load(&vm->stop_reason) && now_ns() < deadline)
		event_loop_run_once(&vm->loop, (int)((deadline - now_ns()) / 1000000) + 1);
	event_loop_del(&vm->loop, in->fd);
	if (atomic_load(&vm->stop_reason)) {
		pr_err("incoming migration: told to quit before GO: given up, the guest stays "
		       "at the source");
		ret = EXIT_OK;
		in->quit = true;
	}
	return ret;
}

/* GO, then the guest is ours: backends, clock, devices, RUNNING. */
static int switchover(struct incoming *in)
{
	int ret = wait_go_or_stop(in);

	if (ret != EXIT_OK || in->quit)
		return ret;
	if (stream_rx_wait_go(&in->rx) < 0)
		return rx_status(in);
	failpoint_kill("dst-kill-after-go");
	/* Pages must flow before anything here may touch guest RAM. */
	if (in->postcopy && postcopy_dst_start(in->postcopy, in->urgent_fd, in->urgent_tls,
						in->creds) < 0)
		return EXIT_VM_FAILURE;
	/* The source let go of its disks and taps before GO: take them. If we
	 * cannot, let go of what we took, so the source can take all back. */
	if (failpoint("dst-attach-fail-after-go")) {
		pr_err("incoming migration: failpoint dst-attach-fail-after-go: cannot open the "
		       "disks and taps");
		return EXIT_USAGE;
	}
	if (vm_attach_backends(in->vm) < 0) {
		vm_release_backends(in->vm);
		return EXIT_USAGE;
	}
	if (vmstate_load_clock(in->vm, in->rx.state.payload, in->rx.state.length) < 0) {
		vm_release_backends(in->vm);
		return EXIT_USAGE;
	}
	/* The source never resumes after GO, so the guest runs here even if
	 * it cannot hear that it does. Said before the devices go on: in
	 * postcopy their first touch of a missing page waits for the source,
	 * which serves pages only after RUNNING. */
	if (stream_rx_reply(&in->rx, REPLY_RUNNING, NULL) < 0)
		pr_warn("incoming migration: cannot confirm RUNNING to the source (%s); the guest runs here",
			strerror(errno));
	for (unsigned i = 0; i < in->vm->nr_virtio; i++)
		virtio_mmio_resume(in->vm->virtio[i]);
	return EXIT_OK;
}

int incoming_stream(struct vm *vm, const struct vm_config *cmdline, const char *uri)
{
	static struct incoming in;      /* the VM's config points into it while it runs */
	int ret;

	memset(&in, 0, sizeof(in));
	in.vm = vm;
	in.cmdline = cmdline;
	in.fd = in.lfd = in.urgent_fd = -1;
	if (check_args(&in, uri) < 0)
		return EXIT_USAGE;
	ret = listen_accept(&in);
	if (ret != EXIT_OK)
		return ret;
	chan_init(&in.c, in.fd, false, 0, "incoming migration");
	in.c.tls = in.tls;
	stream_rx_init(&in.rx, &in.c, true, in.timeout_s);
	log_capture_errors(in.err, sizeof(in.err));
	ret = receive(&in);
	if (ret == EXIT_OK)
		ret = switchover(&in);
	log_capture_errors(NULL, 0);
	if (ret != EXIT_OK || in.quit)
		stream_rx_reply(&in.rx, REPLY_ERROR, in.err[0] ? in.err : "the destination failed");
	if (ret != EXIT_OK || in.quit) {
		vm->stop_hook = NULL;
		postcopy_dst_stop(in.postcopy);
		in.postcopy = NULL;
	}
	stop_listening(&in);
	if (!in.postcopy) {     /* else postcopy's, until it ends */
		close(in.fd);
		if (in.urgent_fd >= 0)
			close(in.urgent_fd);
	}
	ram_loader_free(&in.rx.ram);
	record_free(&in.rx.state);
	ram_pipe_finish(&in.rx.pipe);   /* the machine record stays: the VM's config points into it */
	return ret;
}
