/* SPDX-License-Identifier: MIT */
/*
 * minivmm test guest: shared constants, types and CPL3 helpers.
 *
 * The guest spends a few dozen instructions per vCPU at CPL0 (boot.S), then
 * runs at CPL3 with IOPL=3 for good: port I/O and MMIO are allowed, privileged
 * instructions are not. Everything in this header is usable at CPL3.
 * Included from boot.S too, so constants come first and C after.
 */
#ifndef GUEST_H
#define GUEST_H

#define GUEST_VERSION   1
#define MAX_CPUS        64
#define STACK_SHIFT     14              /* 16 KiB per vCPU */
#define STACK_SIZE      (1 << STACK_SHIFT)
#define TRAMP_ADDR      0x8000          /* AP real-mode trampoline, below 0x9F000 */
#define IMAGE_BASE      0x100000        /* link and load address: 1 MiB */
#define TSS_ADDR        IMAGE_BASE      /* the TSS is the image's first bytes */
#define PD_GIB          16              /* 2 MiB-page coverage without PDPE1GB */

/*
 * GDT selectors: Linux's x86-64 layout (SYSRET-compatible; PVM's own
 * guests use it). Tried under PVM: other user selectors work as well.
 */
#define SEL_KCODE32     0x08
#define SEL_KCODE       0x10
#define SEL_KDATA       0x18
#define SEL_UCODE32     0x23            /* 0x20 | RPL 3 */
#define SEL_UDATA       0x2b            /* 0x28 | RPL 3 */
#define SEL_UCODE       0x33            /* 0x30 | RPL 3 */
#define SEL_TSS0        0x40            /* one 16-byte TSS descriptor per vCPU */

#ifndef __ASSEMBLER__

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef unsigned long long u64;
typedef long long s64;

#define PAGE_SIZE       4096ULL
#define PAGE_SHIFT      12
#define MiB             (1ULL << 20)
#define GiB             (1ULL << 30)
#define NSEC_PER_MSEC   1000000ULL
#define NSEC_PER_USEC   1000ULL
#define ALIGN_UP(x, a)  (((x) + (a) - 1) & ~((u64)(a) - 1))
#define ARRAY_SIZE(a)   (sizeof(a) / sizeof((a)[0]))
#define __noreturn      __attribute__((noreturn))
#define __aligned(n)    __attribute__((aligned(n)))

#define READ_ONCE(x)    __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define WRITE_ONCE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

static inline void outb(u16 port, u8 v)
{
	asm volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline u8 inb(u16 port)
{
	u8 v;

	asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void outw(u16 port, u16 v)
{
	asm volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(u16 port, u32 v)
{
	asm volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline u32 inl(u16 port)
{
	u32 v;

	asm volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline u64 rdtsc(void)
{
	u32 lo, hi;

	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (u64)hi << 32 | lo;
}

static inline void cpuid(u32 leaf, u32 sub, u32 r[4])
{
	asm volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
		     : "a"(leaf), "c"(sub));
}

static inline void cpu_relax(void)
{
	asm volatile("pause" ::: "memory");
}

static inline void *phys(u64 pa)
{
	return (void *)(uintptr_t)pa;   /* identity mapping */
}

/* Set up by boot.S at CPL0 */
struct pvclock {
	u32 version;
	u32 pad0;
	u64 tsc_timestamp;
	u64 system_time;
	u32 mul;
	int8_t shift;
	u8 flags;
	u8 pad[2];
};
extern struct pvclock pvclock[MAX_CPUS];
extern u8 have_kvmclock, have_1g;
extern char tramp_start[], tramp_end[];
extern char __image_start[], __image_end[], __bss_start[], __bss_end[];

/* lib.c */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool parse_u64(const char *s, u64 *out);
bool parse_size(const char *s, u64 *out);
char *next_token(char **p);

/* time.c: per-vCPU clocks; `slot` is the vCPU's boot slot (0 = BSP) */
void time_init(void);
u64 now_ns(unsigned slot);
void sleep_ns(unsigned slot, u64 ns);
extern bool pvsleep_ok;
extern const char *clock_name;

/* console.c: COM1, polled; only the BSP uses it */
void con_init(void);
void out_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *con_poll_line(void);
void con_flush(void);

/* acpi.c */
struct acpi_info {
	u64 lapic;              /* LAPIC MMIO base */
	unsigned madt_cpus;     /* enabled local APICs; 0 = no MADT */
	bool has_sleep;         /* FADT SLEEP_CONTROL_REG found */
	u8 sleep_space;         /* GAS space id: 0 memory, 1 I/O */
	u64 sleep_addr;
	u64 dsdt;               /* from the FADT; 0 = none */
};
extern struct acpi_info acpi;
void acpi_init(u64 rsdp_hint);
u64 acpi_vmgenid_addr(void);
void __noreturn poweroff(void);
void __noreturn triple_fault(void);

/* smp.c */
void smp_kick(unsigned expected);
unsigned smp_wait(unsigned expected);
void __noreturn ap_main(unsigned slot);
void __noreturn bsp_pvh(unsigned slot, u32 start_info);
void __noreturn bsp_linux64(unsigned slot, u64 boot_params);
extern unsigned ncpus;

/* work.c */
struct mem_region {
	u64 base, size;
};
void work_init(const struct mem_region *ram, unsigned n, u64 map_limit);
u64 work_bytes(void);
void __noreturn worker_loop(unsigned slot, unsigned rank);
u64 worker_step(unsigned rank, u64 budget_ns);
void work_wait(unsigned slot, u64 ns);
bool work_busy(void);
void work_poll(void);
void work_fill(u64 bytes);
void work_dirty(u64 bytes, u64 rate);
void work_verify(void);
void work_stats(u64 *filled, u64 *dirtied, u64 *dirty_bytes, u64 *dirty_rate);

/* main.c */
extern u64 boot_ns;

#endif /* __ASSEMBLER__ */
#endif /* GUEST_H */
