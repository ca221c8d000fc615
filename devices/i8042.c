// SPDX-License-Identifier: MIT
#include <linux/kvm.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "arch/x86/layout.h"
#include "devices/i8042.h"
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

void i8042_destroy(struct i8042 *k)
{
	if (!k)
		return;
	pthread_mutex_destroy(&k->lock);
	free(k);
}
