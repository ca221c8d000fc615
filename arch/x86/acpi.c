// SPDX-License-Identifier: MIT
/*
 * ACPI tables for a hardware-reduced x86 machine, built in one buffer:
 *
 *   RSDP | XSDT | FADT | MADT | DSDT      (each 16-byte aligned)
 *
 * Field offsets follow the ACPI 6.5 specification, section 5.2. There is
 * no RSDT (the XSDT is mandatory from revision 2 on and every OS we care
 * about reads it) and no FACS (optional when HW_REDUCED_ACPI is set).
 */
#include <string.h>

#include "arch/x86/acpi.h"
#include "arch/x86/aml.h"

#define ACPI_OEM_ID             "MINVMM"
#define ACPI_OEM_TABLE_PREFIX   "MVMM"  /* + table signature, e.g. MVMMFACP */
#define ACPI_CREATOR_ID         "MVMM"
#define ACPI_OEM_REVISION       1
#define ACPI_CREATOR_REVISION   1

#define HDR_LEN                 36
#define HDR_LENGTH              4
#define HDR_CHECKSUM            9

#define RSDP_LEN                36
#define RSDP_V1_LEN             20
#define XSDT_ENTRIES            2       /* FADT, MADT */
#define XSDT_LEN                (HDR_LEN + 8 * XSDT_ENTRIES)

/* FADT (signature "FACP"), ACPI 6.x: revision 6, 276 bytes. */
#define FADT_LEN                276
#define FADT_REVISION           6
#define FADT_MINOR_REVISION     5
#define FADT_DSDT               40
#define FADT_CENTURY            108
#define FADT_IAPC_BOOT_ARCH     109
#define FADT_FLAGS              112
#define FADT_MINOR_VERSION      131
#define FADT_X_DSDT             140
#define FADT_SLEEP_CONTROL_REG  244
#define FADT_SLEEP_STATUS_REG   256
#define FADT_HYPERVISOR_ID      268

/* MADT (signature "APIC"): header, local APIC address, flags, entries. */
#define MADT_REVISION           5
#define MADT_FIXED_LEN          (HDR_LEN + 8)
#define MADT_LAPIC_LEN          8
#define MADT_IOAPIC_LEN         12
#define MADT_ISO_LEN            10
#define MADT_LAPIC_NMI_LEN      6
#define MADT_LEN(n)             (MADT_FIXED_LEN + MADT_LAPIC_LEN * (n) + \
				 MADT_IOAPIC_LEN + MADT_ISO_LEN + MADT_LAPIC_NMI_LEN)

#define DSDT_REVISION           2       /* 2+: AML integers are 64-bit */

#define RTC_CENTURY_INDEX       0x32    /* CMOS register our RTC implements */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v);
	put16(p + 2, v >> 16);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, v);
	put32(p + 4, v >> 32);
}

static size_t align16(size_t v)
{
	return (v + 15) & ~(size_t)15;
}

uint8_t acpi_checksum(const uint8_t *buf, size_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum += *buf++;
	return -sum;
}

static void set_checksum(uint8_t *table, size_t len, size_t off)
{
	table[off] = 0;
	table[off] = acpi_checksum(table, len);
}

/* The standard 36-byte header; length and checksum are filled in later. */
static void table_header(uint8_t *t, const char sig[4], uint8_t revision)
{
	memcpy(t, sig, 4);
	t[8] = revision;
	memcpy(t + 10, ACPI_OEM_ID, 6);
	memcpy(t + 16, ACPI_OEM_TABLE_PREFIX, 4);
	memcpy(t + 20, sig, 4);
	put32(t + 24, ACPI_OEM_REVISION);
	memcpy(t + 28, ACPI_CREATOR_ID, 4);
	put32(t + 32, ACPI_CREATOR_REVISION);
}

static void table_finish(uint8_t *t, size_t len)
{
	put32(t + HDR_LENGTH, len);
	set_checksum(t, len, HDR_CHECKSUM);
}

/* Generic Address Structure (5.2.3.2). */
#define GAS_SYSTEM_IO           1
#define GAS_ACCESS_BYTE         1

static void put_gas(uint8_t *p, uint8_t space, uint8_t bits, uint8_t access, uint64_t addr)
{
	p[0] = space;
	p[1] = bits;
	p[2] = 0;               /* bit offset */
	p[3] = access;
	put64(p + 4, addr);
}

struct layout {
	uint64_t base;
	size_t xsdt, fadt, madt, dsdt;
};

static void build_rsdp(uint8_t *p, const struct layout *l)
{
	memcpy(p, "RSD PTR ", 8);
	memcpy(p + 9, ACPI_OEM_ID, 6);
	p[15] = 2;                              /* revision: XSDT present */
	put32(p + 16, 0);                       /* no RSDT */
	put32(p + 20, RSDP_LEN);
	put64(p + 24, l->base + l->xsdt);
	set_checksum(p, RSDP_V1_LEN, 8);        /* covers the ACPI 1.0 part */
	set_checksum(p, RSDP_LEN, 32);          /* extended: whole structure */
}

static void build_xsdt(uint8_t *t, const struct layout *l)
{
	table_header(t, "XSDT", 1);
	put64(t + HDR_LEN, l->base + l->fadt);
	put64(t + HDR_LEN + 8, l->base + l->madt);
	table_finish(t, XSDT_LEN);
}

/* FADT flags (5.2.9, table "Fixed ACPI Description Table Fixed Feature Flags"). */
#define FADT_F_WBINVD           (1U << 0)   /* WBINVD works: required on x86 */
#define FADT_F_PROC_C1          (1U << 2)   /* HLT (C1) works on every CPU */
#define FADT_F_PWR_BUTTON       (1U << 4)   /* no fixed-feature power button */
#define FADT_F_SLP_BUTTON       (1U << 5)   /* no fixed-feature sleep button */
#define FADT_F_HW_REDUCED_ACPI  (1U << 20)

/*
 * WBINVD and PROC_C1 state plain facts about a KVM vCPU. Setting the two
 * BUTTON bits keeps Linux from registering fixed-feature button devices
 * that do not exist. RESET_REG_SUP is left clear: there is no reset
 * register, so Linux's ACPI reboot step is skipped and it falls through to
 * the i8042 reset, which the VMM handles. Not set either: the APIC
 * destination-mode bits (Linux picks the right mode itself) and
 * LOW_POWER_S0_IDLE (it would make s2idle the default suspend mode).
 */
#define FADT_FLAGS_VALUE        (FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_PWR_BUTTON | \
				 FADT_F_SLP_BUTTON | FADT_F_HW_REDUCED_ACPI)

/* IA-PC boot architecture flags. */
#define IAPC_BOOT_8042          (1U << 1)   /* i8042 present: keyboard + reset */
#define IAPC_BOOT_NO_VGA        (1U << 2)   /* don't probe VGA ports/memory */

static void build_fadt(uint8_t *t, const struct layout *l, const struct acpi_config *cfg)
{
	uint64_t dsdt = l->base + l->dsdt;

	table_header(t, "FACP", FADT_REVISION);
	/* The 32-bit field only if it can hold the address; X_DSDT always. */
	if (dsdt <= UINT32_MAX)
		put32(t + FADT_DSDT, dsdt);
	put64(t + FADT_X_DSDT, dsdt);
	/*
	 * Everything legacy stays zero: SCI_INT, SMI_CMD, PM1/PM2/PM timer/GPE
	 * blocks are all absent in hardware-reduced mode, which Linux honours
	 * (no SCI, no PM timer clocksource).
	 */
	t[FADT_CENTURY] = RTC_CENTURY_INDEX;
	/* No LEGACY_DEVICES: nothing for a PnP BIOS probe to find. The CMOS
	 * RTC exists, so NO_CMOS_RTC stays clear. */
	put16(t + FADT_IAPC_BOOT_ARCH, IAPC_BOOT_8042 | IAPC_BOOT_NO_VGA);
	put32(t + FADT_FLAGS, FADT_FLAGS_VALUE);
	t[FADT_MINOR_VERSION] = FADT_MINOR_REVISION;
	/*
	 * Poweroff on a hardware-reduced machine: the OS writes SLP_TYP from
	 * \_S5_ with SLP_EN to the sleep control register.
	 */
	put_gas(t + FADT_SLEEP_CONTROL_REG, GAS_SYSTEM_IO, 8, GAS_ACCESS_BYTE,
		cfg->sleep_ctl_port);
	put_gas(t + FADT_SLEEP_STATUS_REG, GAS_SYSTEM_IO, 8, GAS_ACCESS_BYTE,
		cfg->sleep_sts_port);
	memcpy(t + FADT_HYPERVISOR_ID, "MINIVMM", 7);
	table_finish(t, FADT_LEN);
}

/* MADT interrupt controller structure types and flags. */
#define MADT_PCAT_COMPAT        (1U << 0)   /* KVM's irqchip includes 8259s */
#define MADT_TYPE_LAPIC         0
#define MADT_TYPE_IOAPIC        1
#define MADT_TYPE_ISO           2
#define MADT_TYPE_LAPIC_NMI     4
#define MADT_LAPIC_ENABLED      (1U << 0)
#define MADT_ALL_PROCESSORS     0xFF
#define MADT_LINT1              1

static uint8_t *madt_lapics(uint8_t *p, unsigned ncpus)
{
	for (unsigned i = 0; i < ncpus; i++, p += MADT_LAPIC_LEN) {
		p[0] = MADT_TYPE_LAPIC;
		p[1] = MADT_LAPIC_LEN;
		p[2] = i;                       /* ACPI processor UID */
		p[3] = i;                       /* APIC ID */
		put32(p + 4, MADT_LAPIC_ENABLED);
	}
	return p;
}

static void build_madt(uint8_t *t, const struct acpi_config *cfg)
{
	uint8_t *p;

	table_header(t, "APIC", MADT_REVISION);
	put32(t + HDR_LEN, cfg->lapic_addr);
	put32(t + HDR_LEN + 4, MADT_PCAT_COMPAT);
	p = madt_lapics(t + MADT_FIXED_LEN, cfg->ncpus);

	/* IOAPIC ID ncpus: the first ID no local APIC uses. */
	p[0] = MADT_TYPE_IOAPIC;
	p[1] = MADT_IOAPIC_LEN;
	p[2] = cfg->ncpus;
	put32(p + 4, cfg->ioapic_addr);
	put32(p + 8, 0);                        /* GSI base */
	p += MADT_IOAPIC_LEN;

	/* The PIT's IRQ0 is wired to IOAPIC pin 2, as on PC hardware. Flags 0:
	 * conforms to the ISA bus (edge, active high). */
	p[0] = MADT_TYPE_ISO;
	p[1] = MADT_ISO_LEN;
	p[2] = 0;                               /* bus: ISA */
	p[3] = 0;                               /* source IRQ */
	put32(p + 4, 2);                        /* GSI */
	put16(p + 8, 0);
	p += MADT_ISO_LEN;

	/* LINT1 of every local APIC is the NMI input (virtual-wire mode). */
	p[0] = MADT_TYPE_LAPIC_NMI;
	p[1] = MADT_LAPIC_NMI_LEN;
	p[2] = MADT_ALL_PROCESSORS;
	put16(p + 3, 0);
	p[5] = MADT_LINT1;

	table_finish(t, MADT_LEN(cfg->ncpus));
}

/* DSDT ------------------------------------------------------------------ */

#define RES_TEMPLATE_MAX        64

static void emit_crs(struct aml *a, const struct aml *res)
{
	aml_name_decl(a, "_CRS");
	aml_buffer(a, res->buf, res->len);
	if (!aml_ok(res))
		a->invalid = true;
}

static void dsdt_com1(struct aml *a)
{
	uint8_t rbuf[RES_TEMPLATE_MAX];
	struct aml res;
	size_t dev = aml_device_open(a, "COM1");

	aml_name_decl(a, "_HID");
	aml_eisaid_integer(a, "PNP0501");
	aml_name_decl(a, "_UID");
	aml_integer(a, 0);
	aml_init(&res, rbuf, sizeof(rbuf));
	aml_res_io(&res, 0x3F8, 8);
	aml_res_irq_noflags(&res, 4);
	aml_res_end(&res);
	emit_crs(a, &res);
	aml_close(a, dev);
}

/* The i8042 keyboard controller: described so Linux's i8042 driver finds
 * it through PnP instead of probing, and knows there is no AUX port. */
static void dsdt_i8042(struct aml *a)
{
	uint8_t rbuf[RES_TEMPLATE_MAX];
	struct aml res;
	size_t dev = aml_device_open(a, "KBD_");

	aml_name_decl(a, "_HID");
	aml_eisaid_integer(a, "PNP0303");
	aml_init(&res, rbuf, sizeof(rbuf));
	aml_res_io(&res, 0x60, 1);
	aml_res_io(&res, 0x64, 1);
	aml_res_irq_noflags(&res, 1);
	aml_res_end(&res);
	emit_crs(a, &res);
	aml_close(a, dev);
}

/* A virtio-mmio window: Linux's virtio_mmio driver binds to LNRO0005. */
static void dsdt_virtio(struct aml *a, unsigned i, const struct acpi_mmio_dev *d)
{
	uint8_t rbuf[RES_TEMPLATE_MAX];
	struct aml res;
	/* VR00..VR31: two decimal digits (ACPI_MAX_MMIO_DEVS < 100). */
	char name[5] = { 'V', 'R', '0' + i / 10 % 10, '0' + i % 10, 0 };
	size_t dev;

	dev = aml_device_open(a, name);
	aml_name_decl(a, "_HID");
	aml_string(a, "LNRO0005");
	aml_name_decl(a, "_UID");
	aml_integer(a, i);
	/* Cache-coherent DMA: without _CCA, Linux may refuse DMA on ACPI
	 * devices on some architectures. */
	aml_name_decl(a, "_CCA");
	aml_integer(a, 1);
	aml_init(&res, rbuf, sizeof(rbuf));
	aml_res_mem32_fixed(&res, true, d->base, d->size);
	aml_res_ext_irq(&res, AML_EXTIRQ_CONSUMER | AML_EXTIRQ_EDGE, d->irq);
	aml_res_end(&res);
	emit_crs(a, &res);
	aml_close(a, dev);
}

/*
 * The VM generation ID (Microsoft's "Virtual Machine Generation ID"
 * specification): ADDR gives the guest address of the 16-byte ID as a
 * package of its low and high 32 bits. Linux's vmgenid driver matches
 * _HID VMGENCTR; others match the _CID.
 */
static void dsdt_vmgenid(struct aml *a, uint64_t addr)
{
	size_t dev = aml_device_open(a, "VGEN"), pkg;

	aml_name_decl(a, "_HID");
	aml_string(a, "VMGENCTR");
	aml_name_decl(a, "_CID");
	aml_string(a, "VM_Gen_Counter");
	aml_name_decl(a, "_DDN");
	aml_string(a, "VM_Gen_Counter");
	aml_name_decl(a, "ADDR");
	pkg = aml_package_open(a, 2);
	aml_integer(a, addr & 0xFFFFFFFFU);
	aml_integer(a, addr >> 32);
	aml_close(a, pkg);
	aml_close(a, dev);
}

/*
 * A hardware-reduced machine has no GPE block: events reach the OS through
 * a Generic Event Device, whose interrupt makes the OS run _EVT. The only
 * event is "the generation ID changed", so _EVT notifies VGEN (0x80: the
 * value the specification names) whatever the GSI.
 */
static void dsdt_ged(struct aml *a, uint32_t gsi)
{
	uint8_t rbuf[RES_TEMPLATE_MAX];
	struct aml res;
	size_t dev = aml_device_open(a, "GED0"), m;

	aml_name_decl(a, "_HID");
	aml_string(a, "ACPI0013");
	aml_name_decl(a, "_UID");
	aml_integer(a, 0);
	aml_init(&res, rbuf, sizeof(rbuf));
	aml_res_ext_irq(&res, AML_EXTIRQ_CONSUMER | AML_EXTIRQ_EDGE, gsi);
	aml_res_end(&res);
	emit_crs(a, &res);
	m = aml_method_open(a, "_EVT", 1);
	aml_notify(a, "\\_SB_.VGEN", 0x80);
	aml_close(a, m);
	aml_close(a, dev);
}

/* \_S5_: SLP_TYP for poweroff. Hardware-reduced sleep uses only the first
 * value; four elements is the classic form every OS accepts. */
static void dsdt_s5(struct aml *a, uint8_t slp_typ)
{
	size_t pkg;

	aml_name_decl(a, "\\_S5_");
	pkg = aml_package_open(a, 4);
	aml_integer(a, slp_typ);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_close(a, pkg);
}

/* Returns the DSDT's length, or 0 if it does not fit in cap. */
static size_t build_dsdt(uint8_t *t, size_t cap, const struct acpi_config *cfg)
{
	struct aml a;
	size_t sb;

	if (cap < HDR_LEN)
		return 0;
	table_header(t, "DSDT", DSDT_REVISION);
	aml_init(&a, t + HDR_LEN, cap - HDR_LEN);
	sb = aml_scope_open(&a, "\\_SB_");
	dsdt_com1(&a);
	dsdt_i8042(&a);
	for (unsigned i = 0; i < cfg->nr_mmio_devs; i++)
		dsdt_virtio(&a, i, &cfg->mmio_devs[i]);
	if (cfg->vmgenid_addr) {
		dsdt_vmgenid(&a, cfg->vmgenid_addr);
		dsdt_ged(&a, cfg->ged_gsi);
	}
	aml_close(&a, sb);
	dsdt_s5(&a, cfg->s5_slp_typ);
	if (!aml_ok(&a))
		return 0;
	table_finish(t, HDR_LEN + a.len);
	return HDR_LEN + a.len;
}

static int config_valid(const struct acpi_config *cfg)
{
	if (cfg->ncpus == 0 || cfg->ncpus > 255)
		return 0;
	if (cfg->nr_mmio_devs > ACPI_MAX_MMIO_DEVS)
		return 0;
	/* The ID is 16 bytes, 8-byte aligned (the specification's rule). */
	if (cfg->vmgenid_addr & 7)
		return 0;
	/* The MADT holds 32-bit addresses (no address override here). */
	if (cfg->lapic_addr > UINT32_MAX || cfg->ioapic_addr > UINT32_MAX)
		return 0;
	for (unsigned i = 0; i < cfg->nr_mmio_devs; i++) {
		const struct acpi_mmio_dev *d = &cfg->mmio_devs[i];

		/* Memory32Fixed: the whole window must lie below 4 GiB. */
		if (!d->size || d->base > UINT32_MAX || d->size > UINT32_MAX ||
		    d->base + d->size - 1 > UINT32_MAX)
			return 0;
	}
	return 1;
}

size_t acpi_build(uint8_t *buf, size_t cap, uint64_t base_gpa, const struct acpi_config *cfg)
{
	struct layout l = { .base = base_gpa };
	size_t dsdt_len;

	if (!buf || !cfg || !config_valid(cfg) || (base_gpa & 15))
		return 0;
	l.xsdt = align16(RSDP_LEN);
	l.fadt = align16(l.xsdt + XSDT_LEN);
	l.madt = align16(l.fadt + FADT_LEN);
	l.dsdt = align16(l.madt + MADT_LEN(cfg->ncpus));
	if (cap < l.dsdt)
		return 0;
	/* Reserved fields and the gaps between tables must read as zero. */
	memset(buf, 0, l.dsdt);

	dsdt_len = build_dsdt(buf + l.dsdt, cap - l.dsdt, cfg);
	if (!dsdt_len)
		return 0;
	build_madt(buf + l.madt, cfg);
	build_fadt(buf + l.fadt, &l, cfg);
	build_xsdt(buf + l.xsdt, &l);
	build_rsdp(buf, &l);
	return l.dsdt + dsdt_len;
}
