// SPDX-License-Identifier: MIT
/*
 * Input flows stdin -> pending buffer -> UART RX FIFO. When the FIFO is
 * full we stop watching stdin and wait for the UART to say the guest has
 * drained it, so nothing typed or piped is dropped and nothing spins.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "devices/serial.h"
#include "vmm/console.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define CTRL_A 0x01

static void console_on_stdin(void *opaque, uint32_t events);

static void console_watch_stdin(struct vm *vm, bool on)
{
	struct console *c = &vm->console;
	int err;

	if (on == c->stdin_watched || c->stdin_eof)
		return;
	if (!on) {
		event_loop_del(&vm->loop, STDIN_FILENO);
		c->stdin_watched = false;
		return;
	}
	err = event_loop_add(&vm->loop, STDIN_FILENO, EPOLLIN, console_on_stdin, vm);
	if (err == -EPERM) {
		/* A regular file (or /dev/null) is always readable: read it now;
		 * further reads follow as the guest drains its FIFO. */
		console_on_stdin(vm, EPOLLIN);
		return;
	}
	c->stdin_watched = err == 0;
}

/* Feed pending input to the UART; watch stdin again once all is taken. */
static void console_flush(struct vm *vm)
{
	struct console *c = &vm->console;

	c->pending_off += serial_input(vm->serial, c->pending + c->pending_off,
				       c->pending_len - c->pending_off);
	if (c->pending_off < c->pending_len) {
		console_watch_stdin(vm, false);
		return;
	}
	c->pending_len = c->pending_off = 0;
	console_watch_stdin(vm, true);
}

static void console_help(void)
{
	static const char help[] = "\r\nC-a h    print this help\r\n"
				   "C-a x    quit minivmm (the guest is stopped)\r\n"
				   "C-a C-a  send C-a to the guest\r\n";

	if (write(STDERR_FILENO, help, sizeof(help) - 1) < 0)
		return;
}

/* Apply the Ctrl-A escape to buf in place; returns the bytes left for the guest. */
static size_t console_escape(struct vm *vm, uint8_t *buf, size_t n)
{
	struct console *c = &vm->console;
	size_t out = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t ch = buf[i];

		if (!c->escape && ch == CTRL_A) {
			c->escape = true;
			continue;
		}
		if (!c->escape) {
			buf[out++] = ch;
			continue;
		}
		c->escape = false;
		if (ch == 'x' || ch == 'X') {
			pr_info("quit from the console");
			vm_request_stop(vm, VM_STOP_QUIT);
		} else if (ch == CTRL_A) {
			buf[out++] = ch;
		} else if (ch == 'h' || ch == 'H' || ch == '?') {
			console_help();
		}
	}
	return out;
}

static void console_on_stdin(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	struct console *c = &vm->console;
	ssize_t n;

	(void)events;
	n = read(STDIN_FILENO, c->pending, sizeof(c->pending));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {   /* EOF or error: the guest runs on without input */
		console_watch_stdin(vm, false);
		c->stdin_eof = true;
		return;
	}
	c->pending_len = c->is_tty ? console_escape(vm, c->pending, (size_t)n) : (size_t)n;
	c->pending_off = 0;
	console_flush(vm);
}

static void console_on_drained(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	uint64_t v;

	(void)events;
	if (read(serial_rx_drained_fd(vm->serial), &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	if (vm->console.pending_len)
		console_flush(vm);
}

static int console_raw_mode(struct console *c)
{
	struct termios t;

	if (tcgetattr(STDIN_FILENO, &c->saved) < 0)
		return 0;       /* not really a terminal: leave it alone */
	t = c->saved;
	t.c_iflag &= ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
	t.c_lflag &= ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
	t.c_cflag &= ~(CSIZE | PARENB);
	t.c_cflag |= CS8;
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t) < 0) {
		pr_warn("cannot set the terminal to raw mode: %s", strerror(errno));
		return 0;
	}
	c->raw = true;
	return 0;
}

int console_init(struct vm *vm)
{
	struct console *c = &vm->console;

	c->is_tty = isatty(STDIN_FILENO);
	if (c->is_tty && console_raw_mode(c) < 0)
		return -1;
	if (event_loop_add(&vm->loop, serial_rx_drained_fd(vm->serial), EPOLLIN,
			   console_on_drained, vm) < 0)
		return -1;
	console_watch_stdin(vm, true);
	return 0;
}

void console_restore(struct vm *vm)
{
	struct console *c = &vm->console;

	if (!c->raw)
		return;
	tcsetattr(STDIN_FILENO, TCSANOW, &c->saved);
	c->raw = false;
}
