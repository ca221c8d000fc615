// SPDX-License-Identifier: MIT
/*
 * Time and waiting at CPL3. Time is kvmclock (each vCPU reads the pvclock
 * area boot.S registered for it) or, without kvmclock, the TSC scaled by a
 * frequency taken from CPUID. Waiting uses minivmm's paravirtual sleep port,
 * which sleeps the vCPU thread so idle vCPUs leave the host's cores alone;
 * where the port reads all-ones (QEMU) the vCPU spins on the clock instead.
 */
#include "guest.h"

#define PORT_PVSLEEP    0x610
#define PVSLEEP_MAGIC   0x4D56534CU     /* "MVSL" */
#define PVSLEEP_MAX_US  100000U
#define DEFAULT_TSC_KHZ 2000000ULL      /* last resort without any CPUID hint */

bool pvsleep_ok;
const char *clock_name = "tsc";
static u64 tsc_mult;                    /* ns = tsc * tsc_mult >> 32 */

static u64 pvclock_read(const volatile struct pvclock *p)
{
	u32 version, mul;
	u64 tsc, stamp, sys;
	int shift;

	do {
		version = p->version;
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		tsc = rdtsc();
		stamp = p->tsc_timestamp;
		sys = p->system_time;
		mul = p->mul;
		shift = p->shift;
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
	} while ((version & 1) || version != p->version);

	tsc -= stamp;
	tsc = shift < 0 ? tsc >> -shift : tsc << shift;
	return sys + (u64)(((unsigned __int128)tsc * mul) >> 32);
}

/* TSC kHz from the hypervisor leaf 0x40000010, else leaves 0x15/0x16. */
static u64 tsc_khz(void)
{
	u32 r[4];

	cpuid(0x40000000, 0, r);
	if (r[0] >= 0x40000010 && r[0] < 0x40010000) {
		cpuid(0x40000010, 0, r);
		if (r[0])
			return r[0];
	}
	cpuid(0, 0, r);
	if (r[0] >= 0x15) {
		u32 max = r[0];

		cpuid(0x15, 0, r);
		if (r[0] && r[1] && r[2])
			return (u64)r[2] * r[1] / r[0] / 1000;
		if (max >= 0x16) {
			cpuid(0x16, 0, r);
			if (r[0])
				return (u64)r[0] * 1000;
		}
	}
	return DEFAULT_TSC_KHZ;
}

void time_init(void)
{
	if (have_kvmclock)
		clock_name = "kvmclock";
	else
		tsc_mult = (1000000ULL << 32) / tsc_khz();
	pvsleep_ok = inl(PORT_PVSLEEP) == PVSLEEP_MAGIC;
}

u64 now_ns(unsigned slot)
{
	if (have_kvmclock)
		return pvclock_read(&pvclock[slot]);
	return (u64)(((unsigned __int128)rdtsc() * tsc_mult) >> 32);
}

void sleep_ns(unsigned slot, u64 ns)
{
	u64 end;

	if (pvsleep_ok) {
		u64 us = ns / NSEC_PER_USEC;

		outl(PORT_PVSLEEP, us ? (us < PVSLEEP_MAX_US ? (u32)us : PVSLEEP_MAX_US) : 1);
		return;
	}
	end = now_ns(slot) + ns;
	while (now_ns(slot) < end)
		cpu_relax();
}
