// SPDX-License-Identifier: MIT
/*
 * The ACPI the guest needs, read at CPL3: the RSDP (from hvm_start_info or
 * the legacy scan of 0xE0000-0xFFFFF), the XSDT (or RSDT), the MADT for the
 * number of enabled CPUs and the LAPIC address, and the FADT's
 * SLEEP_CONTROL_REG for poweroff. Tables come from the VMM; lengths are
 * still bounded so a broken table cannot send the guest far afield.
 */
#include "guest.h"

#define SDT_HDR         36
#define TABLE_MAX       0x10000
#define FADT_SLEEP_CTL  244             /* GAS: id, width, offset, size, u64 addr */
#define FADT_DSDT       40
#define FADT_X_DSDT     140
#define SLP_TYP_S5      5
#define SLP_EN          (1 << 5)

struct acpi_info acpi = { .lapic = 0xfee00000 };

static u32 rd32(u64 pa)
{
	u32 v;

	memcpy(&v, phys(pa), 4);
	return v;
}

static u64 rd64(u64 pa)
{
	u64 v;

	memcpy(&v, phys(pa), 8);
	return v;
}

static bool checksum_ok(u64 pa, u32 len)
{
	const u8 *p = phys(pa);
	u8 sum = 0;

	while (len--)
		sum += *p++;
	return sum == 0;
}

static bool is_rsdp(u64 pa)
{
	return !memcmp(phys(pa), "RSD PTR ", 8) && checksum_ok(pa, 20);
}

static u64 find_rsdp(u64 hint)
{
	u64 pa;

	if (hint && is_rsdp(hint))
		return hint;
	for (pa = 0xe0000; pa < 0x100000; pa += 16)
		if (is_rsdp(pa))
			return pa;
	return 0;
}

static u32 table_len(u64 pa)
{
	u32 len = rd32(pa + 4);

	return len < SDT_HDR || len > TABLE_MAX ? 0 : len;
}

static void parse_madt(u64 pa)
{
	u32 len = table_len(pa);
	u64 p = pa + 44, end = pa + len;

	if (!len)
		return;
	acpi.lapic = rd32(pa + 36);
	while (p + 2 <= end) {
		u8 type = *(u8 *)phys(p), elen = *(u8 *)phys(p + 1);

		if (elen < 2 || p + elen > end)
			break;
		if (type == 0 && elen >= 8 && (rd32(p + 4) & 1))
			acpi.madt_cpus++;               /* local APIC, enabled */
		else if (type == 9 && elen >= 16 && (rd32(p + 8) & 1))
			acpi.madt_cpus++;               /* local x2APIC, enabled */
		else if (type == 5 && elen >= 12)
			acpi.lapic = rd64(p + 4);       /* LAPIC address override */
		p += elen;
	}
}

static void parse_fadt(u64 pa)
{
	u64 gas = pa + FADT_SLEEP_CTL;
	u8 space = *(u8 *)phys(gas);

	if (table_len(pa) >= FADT_X_DSDT + 8 && rd64(pa + FADT_X_DSDT))
		acpi.dsdt = rd64(pa + FADT_X_DSDT);
	else if (table_len(pa) >= FADT_DSDT + 4)
		acpi.dsdt = rd32(pa + FADT_DSDT);

	if (table_len(pa) < FADT_SLEEP_CTL + 12 || !rd64(gas + 4) || space > 1)
		return;
	acpi.has_sleep = true;
	acpi.sleep_space = space;
	acpi.sleep_addr = rd64(gas + 4);
}

static void parse_table(u64 pa)
{
	if (!pa || !table_len(pa))
		return;
	if (!memcmp(phys(pa), "APIC", 4))
		parse_madt(pa);
	else if (!memcmp(phys(pa), "FACP", 4))
		parse_fadt(pa);
}

void acpi_init(u64 rsdp_hint)
{
	u64 rsdp = find_rsdp(rsdp_hint), root, p;
	unsigned entry;
	u32 len;

	if (!rsdp)
		return;
	entry = 4;
	root = rd32(rsdp + 16);
	if (*(u8 *)phys(rsdp + 15) >= 2 && rd64(rsdp + 24)) {
		entry = 8;
		root = rd64(rsdp + 24);
	}
	len = root ? table_len(root) : 0;
	for (p = root + SDT_HDR; len && p + entry <= root + len; p += entry)
		parse_table(entry == 8 ? rd64(p) : rd32(p));
}

/* An AML integer at p (Zero, One, Byte/Word/DWord/QWord): its size, 0 if none. */
static unsigned aml_int(const u8 *p, const u8 *end, u64 *v)
{
	static const unsigned size[] = { [0x0a] = 1, [0x0b] = 2, [0x0c] = 4, [0x0e] = 8 };
	unsigned n;

	if (p >= end)
		return 0;
	if (*p <= 1) {
		*v = *p;
		return 1;
	}
	if (*p < 0x0a || *p > 0x0e || !size[*p] || p + 1 + size[*p] > end)
		return 0;
	n = size[*p];
	*v = 0;
	memcpy(v, p + 1, n);
	return 1 + n;
}

/*
 * The VM generation ID's address, the way an OS finds it: the DSDT's
 * Name(ADDR, Package(2) {low, high}) inside the VMGENCTR device. A byte
 * search is enough for the VMM's own flat DSDT. 0 if there is none.
 */
u64 acpi_vmgenid_addr(void)
{
	u32 len = acpi.dsdt ? table_len(acpi.dsdt) : 0;
	const u8 *t = acpi.dsdt ? phys(acpi.dsdt) : NULL, *end = t + len, *p;
	u64 lo, hi;
	unsigned n;

	for (p = t + SDT_HDR; len && p + 8 < end; p++) {
		/* NameOp "ADDR" PackageOp PkgLength(1 byte) NumElements(2) */
		if (p[0] != 0x08 || memcmp(p + 1, "ADDR", 4) || p[5] != 0x12 || p[6] >> 6 ||
		    p[7] != 2)
			continue;
		n = aml_int(p + 8, end, &lo);
		if (!n || !aml_int(p + 8 + n, end, &hi))
			return 0;
		return lo | hi << 32;
	}
	return 0;
}

void __noreturn triple_fault(void)
{
	for (;;)
		asm volatile("ud2");    /* #UD -> zero-limit IDT -> triple fault */
}

/* ACPI S5 through the FADT sleep control register, else a triple fault. */
void __noreturn poweroff(void)
{
	u8 v = SLP_TYP_S5 << 2 | SLP_EN;
	int i;

	out_line("POWEROFF");
	con_flush();
	if (acpi.has_sleep) {
		if (acpi.sleep_space == 1)
			outb((u16)acpi.sleep_addr, v);
		else
			*(volatile u8 *)phys(acpi.sleep_addr) = v;
		/* The VMM may act asynchronously: give it 100 ms first. */
		for (i = 0; i < 100; i++)
			sleep_ns(0, NSEC_PER_MSEC);
	}
	triple_fault();
}
