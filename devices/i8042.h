/* SPDX-License-Identifier: MIT */
/*
 * i8042 keyboard controller, kept to what Linux uses: its probe (self
 * test, control byte, port tests), a keyboard that answers reset/ID, and
 * reset through command 0xFE or the output port (both stop the VM as a
 * reboot). No keys are ever typed.
 */
#ifndef DEVICES_I8042_H
#define DEVICES_I8042_H

struct vm;
struct i8042;
struct state_writer;
struct state_reader;

struct i8042 *i8042_create(struct vm *vm);
void i8042_destroy(struct i8042 *k);
/* State: control byte, pending command, unread output, node "i8042"
 * (version 1); a stream without it leaves the controller as reset. */
void i8042_save(struct i8042 *k, struct state_writer *w);
int i8042_load(struct i8042 *k, const struct state_reader *parent);

#endif
