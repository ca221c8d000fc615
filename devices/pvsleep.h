/* SPDX-License-Identifier: MIT */
/*
 * Paravirtual sleep port (arch/x86/layout.h: PORT_PVSLEEP). A guest that
 * cannot HLT (the test guest lives at CPL3) writes a duration and its vCPU
 * thread sleeps instead of spinning on a host core. A kick (pause, stop)
 * cuts the sleep short; the guest re-checks its clock anyway.
 */
#ifndef DEVICES_PVSLEEP_H
#define DEVICES_PVSLEEP_H

struct vm;

int pvsleep_init(struct vm *vm);

#endif
