/* SPDX-License-Identifier: MIT */
/*
 * The console: guest serial output on stdout, stdin to the guest. When
 * stdin is a terminal it is put in raw mode (output processing kept, so
 * "\n" still starts a new line) and Ctrl-A starts an escape: Ctrl-A x
 * quits, Ctrl-A h helps, Ctrl-A Ctrl-A sends a Ctrl-A. The terminal is
 * restored on every exit path of vm_run(). EOF on stdin stops input only.
 */
#ifndef VMM_CONSOLE_H
#define VMM_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <termios.h>

#define CONSOLE_BUF 256

struct console {
	bool is_tty;
	bool raw;               /* termios changed: restore on exit */
	bool escape;            /* Ctrl-A seen */
	bool stdin_watched;
	bool stdin_eof;
	struct termios saved;
	uint8_t pending[CONSOLE_BUF];   /* input the guest's FIFO did not take yet */
	size_t pending_len, pending_off;
};

struct vm;

int console_init(struct vm *vm);
void console_restore(struct vm *vm);

#endif
