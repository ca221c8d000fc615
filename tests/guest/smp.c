// SPDX-License-Identifier: MIT
/*
 * Starting the APs, from CPL3: the identity map is user-accessible, so the
 * BSP writes the LAPIC's ICR like any memory. One broadcast INIT and SIPI
 * (all excluding self) start every AP at once; each takes a slot at CPL0
 * (boot.S: stack, TSS, kvmclock area) and a dense rank here at CPL3.
 *
 * The BSP waits until the MADT's count of enabled CPUs has arrived, or a
 * timeout passes; SIPIs are repeated meanwhile (a running CPU ignores a
 * SIPI, one still waiting after INIT takes it). Then the count is closed:
 * an AP that comes later parks, so the set of workers never changes after
 * READY.
 */
#include "guest.h"

#define APIC_SVR        0xf0
#define APIC_ICR_LO     0x300
#define APIC_ICR_HI     0x310
#define ICR_ALL_BUT_SELF (3 << 18)
#define ICR_INIT        (5 << 8 | 1 << 14)      /* INIT, level assert */
#define ICR_SIPI        (6 << 8 | 1 << 14)
#define UP_CLOSED       (1U << 31)
#define AP_TIMEOUT_NS   (200 * NSEC_PER_MSEC)
#define NO_MADT_WAIT_NS (20 * NSEC_PER_MSEC)    /* without a MADT: whoever comes */
#define SIPI_RETRY_NS   (5 * NSEC_PER_MSEC)

unsigned ncpus = 1;
static u32 cpus_up = 1;                 /* vCPUs at CPL3, BSP included */

static void apic_write(u32 reg, u32 v)
{
	*(volatile u32 *)phys(acpi.lapic + reg) = v;
}

static void send_ipi(u32 icr)
{
	apic_write(APIC_ICR_HI, 0);
	apic_write(APIC_ICR_LO, icr);
}

static void send_sipi(void)
{
	send_ipi(ICR_ALL_BUT_SELF | ICR_SIPI | TRAMP_ADDR >> 12);
}

/* Sends INIT and SIPI to every AP; returns at once. */
void smp_kick(unsigned expected)
{
	if (expected == 1)
		return;
	memcpy(phys(TRAMP_ADDR), tramp_start, (size_t)(tramp_end - tramp_start));
	/* Software-enable the APIC: KVM rebuilds its APIC-ID map on this. */
	apic_write(APIC_SVR, 0x1ff);
	send_ipi(ICR_ALL_BUT_SELF | ICR_INIT);
	send_sipi();
}

/* Waits for the APs (see above); returns the number of vCPUs at CPL3. */
unsigned smp_wait(unsigned expected)
{
	u64 start = now_ns(0), last_sipi = start, now;
	u64 limit = expected ? AP_TIMEOUT_NS : NO_MADT_WAIT_NS;

	if (expected == 1)
		return ncpus = 1;
	for (;;) {
		if (expected && READ_ONCE(cpus_up) >= expected)
			break;
		now = now_ns(0);
		if (now - start >= limit)
			break;
		if (now - last_sipi >= SIPI_RETRY_NS) {
			send_sipi();
			last_sipi = now;
		}
		cpu_relax();
	}
	ncpus = __atomic_fetch_or(&cpus_up, UP_CLOSED, __ATOMIC_ACQ_REL) & ~UP_CLOSED;
	return ncpus;
}

/* CPL3 entry of every AP (boot.S). */
void __noreturn ap_main(unsigned slot)
{
	u32 up = READ_ONCE(cpus_up);

	do {
		if (up & UP_CLOSED)
			for (;;)
				sleep_ns(slot, 100 * NSEC_PER_MSEC);    /* too late */
	} while (!__atomic_compare_exchange_n(&cpus_up, &up, up + 1, false,
					      __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
	worker_loop(slot, up);
}
