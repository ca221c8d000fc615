// SPDX-License-Identifier: MIT
#include <linux/kvm.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/layout.h"
#include "devices/i8042.h"
#include "migration/state.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define STS_OBF        0x01
#define STS_SYS        0x04
#define STS_CMD        0x08
#define STS_UNLOCKED   0x10
#define CTR_KBD_INT    0x01
#define CTR_SYS        0x04

#define CMD_READ_CTR   0x20
#define CMD_WRITE_CTR  0x60
#define CMD_AUX_OFF    0xA7
#define CMD_AUX_ON     0xA8
#define CMD_AUX_TEST   0xA9
#define CMD_SELF_TEST  0xAA
#define CMD_KBD_TEST   0xAB
#define CMD_KBD_OFF    0xAD
#define CMD_KBD_ON     0xAE
#define CMD_WRITE_OUT  0xD1
#define CMD_RESET      0xFE

#define KBD_ACK        0xFA
#define OUTQ_SIZE      8
#define I8042_STATE_VERSION 1

struct i8042 {
	struct vm *vm;
	pthread_mutex_t lock;
	uint8_t ctr;
	uint8_t pending_cmd;     /* command waiting for its data byte */
	uint8_t outq[OUTQ_SIZE];
	unsigned out_head, out_count;
};

static void i8042_push(struct i8042 *k, uint8_t v)
{
	if (k->out_count < OUTQ_SIZE)
		k->outq[(k->out_head + k->out_count++) % OUTQ_SIZE] = v;
}

static uint8_t i8042_pop(struct i8042 *k)
{
	uint8_t v;

	if (!k->out_count)
		return 0;
	v = k->outq[k->out_head];
	k->out_head = (k->out_head + 1) % OUTQ_SIZE;
	k->out_count--;
	return v;
}

static void i8042_reset_guest(struct i8042 *k)
{
	vm_request_stop(k->vm, VM_STOP_RESET);
}

static void i8042_command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case CMD_READ_CTR:
		i8042_push(k, k->ctr);
		break;
	case CMD_WRITE_CTR:
	case CMD_WRITE_OUT:
		k->pending_cmd = cmd;
		break;
	case CMD_SELF_TEST:
		i8042_push(k, 0x55);
		break;
	case CMD_KBD_TEST:
	case CMD_AUX_TEST:
		i8042_push(k, 0x00);
		break;
	case CMD_RESET:
		i8042_reset_guest(k);
		break;
	default:    /* enable/disable ports and the rest: accepted, no effect */
		break;
	}
}

/* A byte on the data port: the argument of a pending command, or for the keyboard. */
static void i8042_data(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending_cmd;

	k->pending_cmd = 0;
	if (cmd == CMD_WRITE_CTR) {
		k->ctr = v;
		return;
	}
	if (cmd == CMD_WRITE_OUT) {
		if (!(v & 1))   /* bit 0 low holds the CPU in reset */
			i8042_reset_guest(k);
		return;
	}
	i8042_push(k, KBD_ACK);
	if (v == 0xFF)          /* reset: self-test passed */
		i8042_push(k, 0xAA);
	else if (v == 0xF2) {   /* identify: MF2 keyboard */
		i8042_push(k, 0xAB);
		i8042_push(k, 0x83);
	}
}

static void i8042_update_irq(struct i8042 *k)
{
	struct kvm_irq_level irq = { .irq = IRQ_I8042_KBD };

	if (!k->out_count || !(k->ctr & CTR_KBD_INT))
		return;
	if (k->vm->vm_fd < 0)           /* a device-level test harness: no irqchip */
		return;
	/* Edge: pulse the line so every byte can be noticed. */
	irq.level = 1;
	ioctl(k->vm->vm_fd, KVM_IRQ_LINE, &irq);
	irq.level = 0;
	ioctl(k->vm->vm_fd, KVM_IRQ_LINE, &irq);
}

static void i8042_io(struct i8042 *k, bool cmd_port, uint8_t *data, unsigned len, bool is_write)
{
	if (len != 1)
		return;
	pthread_mutex_lock(&k->lock);
	if (is_write && cmd_port)
		i8042_command(k, data[0]);
	else if (is_write)
		i8042_data(k, data[0]);
	else if (cmd_port)
		data[0] = STS_UNLOCKED | STS_SYS | (k->out_count ? STS_OBF : 0);
	else
		data[0] = i8042_pop(k);
	if (is_write)
		i8042_update_irq(k);
	pthread_mutex_unlock(&k->lock);
}

static void i8042_data_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len,
			  bool is_write)
{
	(void)offset;
	i8042_io(opaque, false, data, len, is_write);
}

static void i8042_cmd_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len,
			 bool is_write)
{
	(void)offset;
	i8042_io(opaque, true, data, len, is_write);
}

struct i8042 *i8042_create(struct vm *vm)
{
	struct i8042 *k = calloc(1, sizeof(*k));

	if (!k)
		return NULL;
	k->vm = vm;
	k->ctr = CTR_KBD_INT | CTR_SYS;
	pthread_mutex_init(&k->lock, NULL);
	/* Two ports; 0x61 (speaker, PIT gate) belongs to KVM's in-kernel PIT. */
	if (io_bus_register(&vm->pio, PORT_I8042_DATA, 1, i8042_data_io, k) < 0 ||
	    io_bus_register(&vm->pio, PORT_I8042_CMD, 1, i8042_cmd_io, k) < 0) {
		i8042_destroy(k);
		return NULL;
	}
	return k;
}

/* The control byte, a command waiting for its data byte, unread output. */
void i8042_save(struct i8042 *k, struct state_writer *w)
{
	uint8_t out[OUTQ_SIZE];

	pthread_mutex_lock(&k->lock);
	for (unsigned i = 0; i < k->out_count; i++)
		out[i] = k->outq[(k->out_head + i) % OUTQ_SIZE];
	state_node_begin(w, "i8042", I8042_STATE_VERSION);
	state_put_u32(w, "ctr", k->ctr);
	state_put_u32(w, "pending-cmd", k->pending_cmd);
	state_put_bytes(w, "output", out, k->out_count);
	state_node_end(w);
	pthread_mutex_unlock(&k->lock);
}

int i8042_load(struct i8042 *k, const struct state_reader *parent)
{
	struct state_reader n;
	uint32_t ctr, cmd;
	const void *out;
	size_t len;

	if (!state_node_exists(parent, "i8042"))        /* saved before it had state */
		return 0;
	if (state_node_open(parent, "i8042", &n) < 0 ||
	    state_check_version(&n, I8042_STATE_VERSION) < 0 ||
	    state_get_u32(&n, "ctr", &ctr) < 0 || state_get_u32(&n, "pending-cmd", &cmd) < 0 ||
	    state_get_var(&n, "output", &out, &len, OUTQ_SIZE) < 0)
		return -1;
	if (ctr > 0xff || (cmd && cmd != CMD_WRITE_CTR && cmd != CMD_WRITE_OUT)) {
		pr_err("device state: %s: ctr %#x / pending-cmd %#x out of range", n.path, ctr, cmd);
		return -1;
	}
	pthread_mutex_lock(&k->lock);
	k->ctr = (uint8_t)ctr;
	k->pending_cmd = (uint8_t)cmd;
	memcpy(k->outq, out, len);
	k->out_head = 0;
	k->out_count = (unsigned)len;
	pthread_mutex_unlock(&k->lock);
	return 0;
}

void i8042_destroy(struct i8042 *k)
{
	if (!k)
		return;
	pthread_mutex_destroy(&k->lock);
	free(k);
}
