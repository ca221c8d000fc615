// SPDX-License-Identifier: MIT
/*
 * COM1 console, polled, BSP only. Every port access is a VM exit (~13 us
 * under PVM), so output uses the 16550 FIFO when there is one: one LSR read
 * per 16 bytes instead of one per byte.
 *
 * Input is echoed as typed, with backspace. Output lines never split an
 * echoed, half-typed command: the partial line is ended first and typed
 * again after the output, so every output line starts at column 0 and
 * scripts can match `^HB ` and friends.
 */
#include "guest.h"

#define COM1            0x3f8
#define UART_IER        1
#define UART_FCR_IIR    2
#define UART_LSR        5
#define LSR_DR          0x01
#define LSR_THRE        0x20
#define LSR_TEMT        0x40
#define LINE_MAX        128

static unsigned tx_burst = 1;   /* bytes the UART takes once THRE is set */
static unsigned tx_room;

static char edit[LINE_MAX];     /* the line being typed */
static unsigned edit_len;
static bool line_pending;       /* a complete line waits in edit[] */
static bool last_cr;

void con_init(void)
{
	outb(COM1 + UART_IER, 0);               /* polling: no interrupts */
	outb(COM1 + UART_FCR_IIR, 0x07);        /* enable and clear FIFOs */
	if ((inb(COM1 + UART_FCR_IIR) & 0xc0) == 0xc0)
		tx_burst = 16;
}

static void con_putc(char c)
{
	if (!tx_room) {
		while (!(inb(COM1 + UART_LSR) & LSR_THRE))
			cpu_relax();
		tx_room = tx_burst;
	}
	outb(COM1, (u8)c);
	tx_room--;
}

/* Waits until every byte has left the UART (before powering off). */
void con_flush(void)
{
	while (!(inb(COM1 + UART_LSR) & LSR_TEMT))
		cpu_relax();
}

static void con_write(const char *s, size_t n)
{
	while (n--)
		con_putc(*s++);
}

void out_line(const char *fmt, ...)
{
	char buf[256];
	bool partial = edit_len && !line_pending;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	if (partial)
		con_putc('\n');
	con_write(buf, (size_t)n);
	if (partial)
		con_write(edit, edit_len);
}

static void con_input(char c)
{
	bool cr = c == '\r';

	if (c == '\n' && last_cr) {             /* second half of CR LF */
		last_cr = false;
		return;
	}
	last_cr = cr;
	if (cr || c == '\n') {
		con_putc('\n');
		edit[edit_len] = '\0';
		line_pending = true;
	} else if (c == '\b' || c == 0x7f) {
		if (edit_len) {
			edit_len--;
			con_write("\b \b", 3);
		}
	} else if (c >= 0x20 && c < 0x7f && edit_len < LINE_MAX - 1) {
		edit[edit_len++] = c;
		con_putc(c);
	}
}

/*
 * Reads what has been typed; returns a complete line (valid until the next
 * call) or NULL. Call it only when the line can be acted on: until then the
 * typed bytes wait in the UART and the VMM, which is the backpressure.
 */
char *con_poll_line(void)
{
	if (line_pending) {
		line_pending = false;
		edit_len = 0;
	}
	while (inb(COM1 + UART_LSR) & LSR_DR) {
		con_input((char)inb(COM1));
		if (line_pending)
			return edit;
	}
	return NULL;
}
