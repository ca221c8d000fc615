// SPDX-License-Identifier: MIT
/*
 * A 16550A as Linux's 8250 driver and simple polling guests use it: the
 * divisor latch, FIFO control, line/modem control, scratch register and
 * the IIR priority scheme (RX data over THR empty). Modem status lines
 * report DCD/DSR/CTS asserted so drivers that wait for them do not stall.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "devices/serial.h"
#include "migration/state.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define UART_RBR_THR 0  /* DLAB=0 */
#define UART_IER     1
#define UART_IIR_FCR 2
#define UART_LCR     3
#define UART_MCR     4
#define UART_LSR     5
#define UART_MSR     6
#define UART_SCR     7

#define IER_RDI      0x01
#define IER_THRI     0x02
#define IIR_NO_INT   0x01
#define IIR_THRI     0x02
#define IIR_RDI      0x04
#define IIR_FIFO_ON  0xc0
#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB     0x80
#define LSR_DR       0x01
#define LSR_THRE     0x20
#define LSR_TEMT     0x40
#define MCR_LOOP     0x10
#define MCR_OUT2     0x08
#define MSR_STATUS   0xb0 /* DCD, DSR, CTS */

#define RX_FIFO_SIZE 16
#define SERIAL_STATE_VERSION 1

struct serial {
	struct vm *vm;
	pthread_mutex_t lock;
	int out_fd;
	unsigned irq;
	uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
	bool thr_empty_pending;  /* THRE interrupt armed until IIR read or THR write */
	bool irq_level;
	uint8_t rx[RX_FIFO_SIZE];
	unsigned rx_head, rx_count;
	int rx_drained_efd;     /* signalled when the guest empties the RX FIFO */
};

static uint8_t serial_iir(const struct serial *s)
{
	uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO_ON : 0;

	if ((s->ier & IER_RDI) && s->rx_count)
		return IIR_RDI | fifo;
	if ((s->ier & IER_THRI) && s->thr_empty_pending)
		return IIR_THRI | fifo;
	return IIR_NO_INT | fifo;
}

/* Called with the lock held after any state change. */
static void serial_update_irq(struct serial *s)
{
	bool level = !(serial_iir(s) & IIR_NO_INT);
	struct kvm_irq_level irq = { .irq = s->irq };

	if (level == s->irq_level)
		return;
	s->irq_level = level;
	irq.level = level;
	if (s->vm->vm_fd < 0)           /* a device-level test harness: no irqchip */
		return;
	if (ioctl(s->vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		pr_warn_ratelimited("serial: KVM_IRQ_LINE: %s", strerror(errno));
}

static void serial_tx(struct serial *s, uint8_t c)
{
	if (s->mcr & MCR_LOOP) {
		if (s->rx_count < RX_FIFO_SIZE)
			s->rx[(s->rx_head + s->rx_count++) % RX_FIFO_SIZE] = c;
	} else {
		/* A blocked console stalls the vCPU, as a real UART would. */
		while (write(s->out_fd, &c, 1) < 0 && errno == EINTR)
			;
	}
	s->thr_empty_pending = true;
}

static uint8_t serial_rx(struct serial *s)
{
	uint8_t c;

	if (!s->rx_count)
		return 0;
	c = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % RX_FIFO_SIZE;
	if (--s->rx_count == 0)
		eventfd_write(s->rx_drained_efd, 1);
	return c;
}

static void serial_write(struct serial *s, unsigned reg, uint8_t v)
{
	bool dlab = s->lcr & LCR_DLAB;

	switch (reg) {
	case UART_RBR_THR:
		if (dlab)
			s->dll = v;
		else
			serial_tx(s, v);
		break;
	case UART_IER:
		if (dlab) {
			s->dlm = v;
			break;
		}
		/* Enabling THRI with an empty THR raises it at once (16550 behaviour). */
		if (!(s->ier & IER_THRI) && (v & IER_THRI))
			s->thr_empty_pending = true;
		s->ier = v & 0x0f;
		break;
	case UART_IIR_FCR:
		s->fcr = v;
		if (v & FCR_CLEAR_RX)
			s->rx_count = 0;
		break;
	case UART_LCR:
		s->lcr = v;
		break;
	case UART_MCR:
		s->mcr = v & 0x1f;
		break;
	case UART_SCR:
		s->scr = v;
		break;
	}
}

static uint8_t serial_read(struct serial *s, unsigned reg)
{
	bool dlab = s->lcr & LCR_DLAB;
	uint8_t v;

	switch (reg) {
	case UART_RBR_THR:
		return dlab ? s->dll : serial_rx(s);
	case UART_IER:
		return dlab ? s->dlm : s->ier;
	case UART_IIR_FCR:
		v = serial_iir(s);
		if ((v & 0x0f) == IIR_THRI)
			s->thr_empty_pending = false;
		return v;
	case UART_LCR:
		return s->lcr;
	case UART_MCR:
		return s->mcr;
	case UART_LSR:
		return LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
	case UART_MSR:
		if (s->mcr & MCR_LOOP)  /* loopback: outputs wired to inputs */
			return (uint8_t)((s->mcr & 0x0c) << 4 | (s->mcr & 0x01) << 5 |
					 (s->mcr & 0x02) << 3);
		return MSR_STATUS;
	default:
		return s->scr;
	}
}

static void serial_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct serial *s = opaque;

	if (len != 1) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&s->lock);
	if (is_write)
		serial_write(s, (unsigned)offset, data[0]);
	else
		data[0] = serial_read(s, (unsigned)offset);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

size_t serial_input(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	while (n < len && s->rx_count < RX_FIFO_SIZE)
		s->rx[(s->rx_head + s->rx_count++) % RX_FIFO_SIZE] = buf[n++];
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

struct serial *serial_create(struct vm *vm, uint16_t port, unsigned irq, int out_fd)
{
	struct serial *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->vm = vm;
	s->irq = irq;
	s->out_fd = out_fd;
	s->mcr = MCR_OUT2;
	s->rx_drained_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&s->lock, NULL);
	if (s->rx_drained_efd < 0 || io_bus_register(&vm->pio, port, 8, serial_io, s) < 0) {
		serial_destroy(s);
		return NULL;
	}
	return s;
}

/*
 * Everything the guest's driver can observe. Linux's 8250 driver, caught
 * halfway through a line, waits for the THR-empty interrupt it enabled in
 * IER: without IER and the pending THRE, its console stalls after a move.
 */
void serial_save(struct serial *s, struct state_writer *w)
{
	uint8_t rx[RX_FIFO_SIZE];

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < s->rx_count; i++)
		rx[i] = s->rx[(s->rx_head + i) % RX_FIFO_SIZE];
	state_node_begin(w, "serial", SERIAL_STATE_VERSION);
	state_put_u32(w, "ier", s->ier);
	state_put_u32(w, "lcr", s->lcr);
	state_put_u32(w, "mcr", s->mcr);
	state_put_u32(w, "fcr", s->fcr);
	state_put_u32(w, "scr", s->scr);
	state_put_u32(w, "divisor", (uint32_t)s->dlm << 8 | s->dll);
	state_put_u32(w, "thr-empty-pending", s->thr_empty_pending);
	state_put_bytes(w, "rx-fifo", rx, s->rx_count);
	state_node_end(w);
	pthread_mutex_unlock(&s->lock);
}

static int get_reg(const struct state_reader *r, const char *prop, uint32_t max, uint8_t *v)
{
	uint32_t x;

	if (state_get_u32(r, prop, &x) < 0)
		return -1;
	if (x > max) {
		pr_err("device state: %s/%s = %#x is out of range", r->path, prop, x);
		return -1;
	}
	*v = (uint8_t)x;
	return 0;
}

int serial_load(struct serial *s, const struct state_reader *parent)
{
	struct state_reader r;
	uint8_t ier, lcr, mcr, fcr, scr, thre;
	uint32_t divisor;
	const void *rx;
	size_t rx_len;

	/* Streams saved before the UART had state carry none: keep the reset state. */
	if (!state_node_exists(parent, "serial"))
		return 0;
	if (state_node_open(parent, "serial", &r) < 0 ||
	    state_check_version(&r, SERIAL_STATE_VERSION) < 0 ||
	    get_reg(&r, "ier", 0x0f, &ier) < 0 || get_reg(&r, "lcr", 0xff, &lcr) < 0 ||
	    get_reg(&r, "mcr", 0x1f, &mcr) < 0 || get_reg(&r, "fcr", 0xff, &fcr) < 0 ||
	    get_reg(&r, "scr", 0xff, &scr) < 0 || get_reg(&r, "thr-empty-pending", 1, &thre) < 0 ||
	    state_get_u32(&r, "divisor", &divisor) < 0 ||
	    state_get_var(&r, "rx-fifo", &rx, &rx_len, RX_FIFO_SIZE) < 0)
		return -1;
	if (divisor > 0xffff) {
		pr_err("device state: %s/divisor = %#x is out of range", r.path, divisor);
		return -1;
	}
	pthread_mutex_lock(&s->lock);
	s->ier = ier;
	s->lcr = lcr;
	s->mcr = mcr;
	s->fcr = fcr;
	s->scr = scr;
	s->dll = (uint8_t)divisor;
	s->dlm = (uint8_t)(divisor >> 8);
	s->thr_empty_pending = thre;
	memcpy(s->rx, rx, rx_len);
	s->rx_head = 0;
	s->rx_count = (unsigned)rx_len;
	serial_update_irq(s);           /* an interrupt pending at the save is pending here */
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int serial_rx_drained_fd(struct serial *s)
{
	return s->rx_drained_efd;
}

void serial_destroy(struct serial *s)
{
	if (!s)
		return;
	if (s->rx_drained_efd >= 0)
		close(s->rx_drained_efd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
