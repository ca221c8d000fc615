/* SPDX-License-Identifier: MIT */
/*
 * 8250/16550A UART on the console. Guest output goes to `out_fd` as it is
 * written; host input is queued with serial_input() from the main thread.
 * The RX FIFO is 16 bytes as on a 16550A; when it is full serial_input()
 * takes fewer bytes and the caller keeps the rest (back-pressure).
 * Interrupts (RX data, THR empty) are raised on `irq` through KVM_IRQ_LINE.
 */
#ifndef DEVICES_SERIAL_H
#define DEVICES_SERIAL_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct serial;
struct state_writer;
struct state_reader;

struct serial *serial_create(struct vm *vm, uint16_t port, unsigned irq, int out_fd);
void serial_destroy(struct serial *s);
/* Queue host input; returns how many bytes were taken. Thread-safe. */
size_t serial_input(struct serial *s, const uint8_t *buf, size_t len);
/* An eventfd that becomes readable when the guest has emptied the RX FIFO:
 * the console waits on it instead of polling when input is backed up. */
int serial_rx_drained_fd(struct serial *s);

/* State: registers, divisor, RX FIFO contents and the pending THRE
 * interrupt, as node "serial" (version 1). Load re-raises a pending
 * interrupt; a stream without the node leaves the UART as reset. */
void serial_save(struct serial *s, struct state_writer *w);
int serial_load(struct serial *s, const struct state_reader *parent);

#endif
