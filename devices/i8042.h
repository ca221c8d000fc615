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

struct i8042 *i8042_create(struct vm *vm);
void i8042_destroy(struct i8042 *k);

#endif
