// SPDX-License-Identifier: MIT
/*
 * The legacy devices' state round trips. A 16550A programmed the way
 * Linux's 8250 driver programs it, with input waiting and a THR-empty
 * interrupt pending, is saved; a fresh UART loads it and the guest sees
 * exactly the same registers, FIFO and interrupt through its ports. The
 * same for the CMOS (index and bytes) and the i8042 (control byte, a
 * command waiting for its data, unread output). Hostile state is refused
 * whole; a stream without a node leaves that device as reset.
 */
#include <string.h>
#include <unistd.h>

#include "devices/i8042.h"
#include "devices/rtc.h"
#include "devices/serial.h"
#include "migration/state.h"
#include "tests/unit/check_main.h"
#include "vmm/vm.h"

#define COM1 0x3f8
enum { THR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, SCR = 7 };

struct uart {
	struct vm vm;
	struct serial *s;
	int out[2];
};

static void uart_init(struct uart *u)
{
	memset(u, 0, sizeof(*u));
	u->vm.vm_fd = u->vm.kvm_fd = -1;
	u->vm.pio.name = "pio";
	ck_assert_int_eq(pipe(u->out), 0);
	u->s = serial_create(&u->vm, COM1, 4, u->out[1]);
	ck_assert_ptr_nonnull(u->s);
}

static void uart_fini(struct uart *u)
{
	serial_destroy(u->s);
	close(u->out[0]);
	close(u->out[1]);
}

static uint8_t port_in(struct vm *vm, uint16_t port)
{
	uint8_t v = 0;

	ck_assert(io_bus_access(&vm->pio, port, &v, 1, false));
	return v;
}

static void port_out(struct vm *vm, uint16_t port, uint8_t v)
{
	ck_assert(io_bus_access(&vm->pio, port, &v, 1, true));
}

static uint8_t in8(struct uart *u, unsigned reg)
{
	return port_in(&u->vm, (uint16_t)(COM1 + reg));
}

static void out8(struct uart *u, unsigned reg, uint8_t v)
{
	port_out(&u->vm, (uint16_t)(COM1 + reg), v);
}

static void *save(struct uart *u, size_t *len)
{
	struct state_writer w;
	void *blob;

	ck_assert_int_eq(state_writer_init(&w), 0);
	serial_save(u->s, &w);
	ck_assert_int_eq(state_writer_finish(&w, &blob, len), 0);
	return blob;
}

static int load(struct uart *u, const void *blob, size_t len)
{
	struct state_reader r;

	ck_assert_int_eq(state_reader_open(&r, blob, len), 0);
	return serial_load(u->s, &r);
}

START_TEST(linux_driver_state_round_trip)
{
	struct uart a, b;
	size_t len;
	void *blob;

	uart_init(&a);
	uart_init(&b);
	/* 115200 8N1 with FIFOs, as Linux's 8250 sets it up, then a byte sent
	 * with the THR-empty interrupt enabled and two bytes of input queued. */
	out8(&a, LCR, 0x83);
	out8(&a, THR, 0x01);
	out8(&a, IER, 0x00);
	out8(&a, LCR, 0x03);
	out8(&a, FCR, 0xc1);
	out8(&a, MCR, 0x0b);
	out8(&a, SCR, 0x5a);
	out8(&a, IER, 0x03);
	out8(&a, THR, 'x');
	ck_assert_uint_eq(serial_input(a.s, (const uint8_t *)"hi", 2), 2);

	blob = save(&a, &len);
	ck_assert_int_eq(load(&b, blob, len), 0);
	free(blob);

	ck_assert_uint_eq(in8(&b, IER), 0x03);
	ck_assert_uint_eq(in8(&b, LCR), 0x03);
	ck_assert_uint_eq(in8(&b, MCR), 0x0b);
	ck_assert_uint_eq(in8(&b, SCR), 0x5a);
	out8(&b, LCR, 0x83);
	ck_assert_uint_eq(in8(&b, THR), 0x01);
	ck_assert_uint_eq(in8(&b, IER), 0x00);
	out8(&b, LCR, 0x03);
	/* RX data first (higher priority), then the pending THRE, then none. */
	ck_assert_uint_eq(in8(&b, IIR), 0xc4);
	ck_assert_uint_eq(in8(&b, LSR) & 0x01, 0x01);
	ck_assert_uint_eq(in8(&b, THR), 'h');
	ck_assert_uint_eq(in8(&b, THR), 'i');
	ck_assert_uint_eq(in8(&b, LSR) & 0x01, 0x00);
	ck_assert_uint_eq(in8(&b, IIR), 0xc2);
	ck_assert_uint_eq(in8(&b, IIR), 0xc1);
	uart_fini(&a);
	uart_fini(&b);
}
END_TEST

/* A "serial" node with one property replaced (or left out with value -1). */
static void *crafted(const char *prop, int64_t value, size_t rx_len, uint32_t version,
		     size_t *len)
{
	static const char *regs[] = { "ier", "lcr", "mcr", "fcr", "scr", "divisor",
				      "thr-empty-pending" };
	uint8_t rx[32] = { 0 };
	struct state_writer w;
	void *blob;

	ck_assert_int_eq(state_writer_init(&w), 0);
	state_node_begin(&w, "serial", version);
	for (unsigned i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
		if (!strcmp(regs[i], prop) && value < 0)
			continue;
		state_put_u32(&w, regs[i], !strcmp(regs[i], prop) ? (uint32_t)value : 0);
	}
	state_put_bytes(&w, "rx-fifo", rx, rx_len);
	state_node_end(&w);
	ck_assert_int_eq(state_writer_finish(&w, &blob, len), 0);
	return blob;
}

START_TEST(bad_state_refused_whole)
{
	static const struct { const char *prop; int64_t value; size_t rx; uint32_t ver; } bad[] = {
		{ "ier", 0x10, 0, 1 },          /* reserved IER bits */
		{ "mcr", 0x20, 0, 1 },
		{ "lcr", 0x100, 0, 1 },
		{ "divisor", 0x10000, 0, 1 },
		{ "thr-empty-pending", 2, 0, 1 },
		{ "ier", 1, 17, 1 },            /* more than the FIFO holds */
		{ "scr", -1, 0, 1 },            /* a property missing */
		{ "ier", 1, 0, 2 },             /* a newer version */
	};
	struct uart u;
	size_t len;

	uart_init(&u);
	out8(&u, IER, 0x01);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		void *blob = crafted(bad[i].prop, bad[i].value, bad[i].rx, bad[i].ver, &len);

		ck_assert_msg(load(&u, blob, len) < 0, "case %u accepted", i);
		free(blob);
		ck_assert_uint_eq(in8(&u, IER), 0x01);          /* nothing half-applied */
	}
	uart_fini(&u);
}
END_TEST

START_TEST(stream_without_uart_state)
{
	struct state_writer w;
	struct uart u;
	size_t len;
	void *blob;

	uart_init(&u);
	ck_assert_int_eq(state_writer_init(&w), 0);
	state_node_begin(&w, "vm", 1);
	state_node_end(&w);
	ck_assert_int_eq(state_writer_finish(&w, &blob, &len), 0);
	ck_assert_int_eq(load(&u, blob, len), 0);
	free(blob);
	ck_assert_uint_eq(in8(&u, IER), 0);
	ck_assert_uint_eq(in8(&u, MCR), 0x08);
	ck_assert_uint_eq(in8(&u, IIR) & 0x0f, 0x01);
	uart_fini(&u);
}
END_TEST

static void bare_vm(struct vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	vm->vm_fd = vm->kvm_fd = -1;
	vm->pio.name = "pio";
}

START_TEST(rtc_round_trip)
{
	struct vm va, vb;
	struct rtc *a, *b;
	struct state_writer w;
	struct state_reader r;
	size_t len;
	void *blob;

	bare_vm(&va);
	bare_vm(&vb);
	a = rtc_create(&va);
	b = rtc_create(&vb);
	ck_assert(a && b);
	port_out(&va, 0x70, 0x0b);
	port_out(&va, 0x71, 0x06);              /* binary, 24 h */
	port_out(&va, 0x70, 0x40);
	port_out(&va, 0x71, 0x77);              /* a CMOS byte a guest keeps */
	ck_assert_int_eq(state_writer_init(&w), 0);
	rtc_save(a, &w);
	ck_assert_int_eq(state_writer_finish(&w, &blob, &len), 0);
	ck_assert_int_eq(state_reader_open(&r, blob, len), 0);
	ck_assert_int_eq(rtc_load(b, &r), 0);
	free(blob);
	ck_assert_uint_eq(port_in(&vb, 0x71), 0x77);    /* the index came along */
	port_out(&vb, 0x70, 0x0b);
	ck_assert_uint_eq(port_in(&vb, 0x71), 0x06);
	rtc_destroy(a);
	rtc_destroy(b);
}
END_TEST

START_TEST(i8042_round_trip)
{
	struct vm va, vb;
	struct i8042 *a, *b;
	struct state_writer w;
	struct state_reader r;
	size_t len;
	void *blob;

	bare_vm(&va);
	bare_vm(&vb);
	a = i8042_create(&va);
	b = i8042_create(&vb);
	ck_assert(a && b);
	port_out(&va, 0x64, 0xaa);              /* self test: 0x55 waits to be read */
	port_out(&va, 0x64, 0x60);              /* write CTR: its data byte not yet sent */
	ck_assert_int_eq(state_writer_init(&w), 0);
	i8042_save(a, &w);
	ck_assert_int_eq(state_writer_finish(&w, &blob, &len), 0);
	ck_assert_int_eq(state_reader_open(&r, blob, len), 0);
	ck_assert_int_eq(i8042_load(b, &r), 0);
	free(blob);
	ck_assert_uint_eq(port_in(&vb, 0x64) & 0x01, 0x01);     /* output waiting */
	port_out(&vb, 0x60, 0x45);              /* the pending command takes it */
	ck_assert_uint_eq(port_in(&vb, 0x60), 0x55);
	port_out(&vb, 0x64, 0x20);
	ck_assert_uint_eq(port_in(&vb, 0x60), 0x45);
	i8042_destroy(a);
	i8042_destroy(b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("legacy-state");
	TCase *tc = tcase_create("state");

	tcase_add_test(tc, linux_driver_state_round_trip);
	tcase_add_test(tc, bad_state_refused_whole);
	tcase_add_test(tc, stream_without_uart_state);
	tcase_add_test(tc, rtc_round_trip);
	tcase_add_test(tc, i8042_round_trip);
	suite_add_tcase(s, tc);
	return check_run(s);
}
