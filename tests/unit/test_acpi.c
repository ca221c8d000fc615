// SPDX-License-Identifier: MIT
#include <check.h>

#include "tests/unit/check_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "arch/x86/aml.h"

#define BASE    0xE0000ULL
#define BUFSZ   0x20000

static uint8_t buf[BUFSZ];

static uint16_t rd16(const uint8_t *p) { return p[0] | p[1] << 8; }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static struct acpi_config make_cfg(unsigned ncpus, unsigned ndevs)
{
	struct acpi_config c = {
		.ncpus = ncpus, .ioapic_addr = 0xFEC00000, .lapic_addr = 0xFEE00000,
		.sleep_ctl_port = 0x600, .sleep_sts_port = 0x601, .s5_slp_typ = 5,
		.nr_mmio_devs = ndevs,
	};

	for (unsigned i = 0; i < ndevs; i++)
		c.mmio_devs[i] = (struct acpi_mmio_dev){ 0xD0000000 + i * 0x1000, 0x1000, 5 + i };
	return c;
}

static size_t build(unsigned ncpus, unsigned ndevs)
{
	struct acpi_config c = make_cfg(ncpus, ndevs);
	size_t n;

	memset(buf, 0xCC, sizeof(buf));
	n = acpi_build(buf, sizeof(buf), BASE, &c);
	ck_assert_uint_gt(n, 0);
	return n;
}

/* A table at guest address gpa: inside the built area, with its checksum. */
static const uint8_t *table_at(uint64_t gpa, size_t used, const char *sig)
{
	const uint8_t *t;

	ck_assert_uint_ge(gpa, BASE);
	ck_assert_uint_le(gpa - BASE + 36, used);
	t = buf + (gpa - BASE);
	ck_assert_mem_eq(t, sig, 4);
	ck_assert_uint_le(gpa - BASE + rd32(t + 4), used);
	ck_assert_uint_eq(acpi_checksum(t, rd32(t + 4)), 0);
	ck_assert_mem_eq(t + 10, "MINVMM", 6);
	return t;
}

static const uint8_t *xsdt_of(size_t used)
{
	ck_assert_mem_eq(buf, "RSD PTR ", 8);
	return table_at(rd64(buf + 24), used, "XSDT");
}

static const uint8_t *fadt_of(size_t used)
{
	return table_at(rd64(xsdt_of(used) + 36), used, "FACP");
}

static const uint8_t *madt_of(size_t used)
{
	return table_at(rd64(xsdt_of(used) + 44), used, "APIC");
}

static const uint8_t *dsdt_of(size_t used)
{
	return table_at(rd64(fadt_of(used) + 140), used, "DSDT");
}

START_TEST(rsdp_and_xsdt)
{
	size_t used = build(4, 3);
	const uint8_t *x;

	ck_assert_mem_eq(buf, "RSD PTR ", 8);
	ck_assert_uint_eq(acpi_checksum(buf, 20), 0);
	ck_assert_uint_eq(acpi_checksum(buf, 36), 0);
	ck_assert_uint_eq(buf[15], 2);
	ck_assert_uint_eq(rd32(buf + 20), 36);
	ck_assert_mem_eq(buf + 9, "MINVMM", 6);
	x = xsdt_of(used);
	ck_assert_uint_eq(rd32(x + 4), 36 + 2 * 8);
	ck_assert_uint_eq(x[8], 1);
	fadt_of(used);
	madt_of(used);
	dsdt_of(used);
	/* Nothing past the returned size was touched. */
	ck_assert_uint_eq(buf[used], 0xCC);
}
END_TEST

START_TEST(fadt_fields)
{
	size_t used = build(2, 1);
	const uint8_t *f = fadt_of(used), *d = dsdt_of(used);
	uint32_t flags = rd32(f + 112);

	ck_assert_uint_eq(rd32(f + 4), 276);
	ck_assert_uint_eq(f[8], 6);
	ck_assert_uint_eq(rd32(f + 40), d - buf + BASE);        /* DSDT */
	ck_assert_uint_eq(rd64(f + 140), d - buf + BASE);       /* X_DSDT */
	ck_assert_uint_eq(rd32(f + 36), 0);                     /* no FACS */
	ck_assert_uint_eq(rd64(f + 132), 0);
	ck_assert_uint_eq(rd16(f + 46), 0);                     /* no SCI */
	ck_assert_uint_eq(rd32(f + 64), 0);                     /* no PM1a_CNT */
	ck_assert_uint_eq(rd32(f + 76), 0);                     /* no PM timer */
	ck_assert(flags & (1U << 20));                          /* HW_REDUCED_ACPI */
	ck_assert(flags & (1U << 4));                           /* PWR_BUTTON */
	ck_assert(flags & (1U << 5));                           /* SLP_BUTTON */
	ck_assert(!(flags & (1U << 10)));                       /* no RESET_REG */
	ck_assert(!(flags & (1U << 21)));                       /* not S0 idle */
	ck_assert_uint_eq(rd16(f + 109), (1U << 1) | (1U << 2)); /* 8042, no VGA */
	/* Sleep control/status GAS: system I/O, 8 bits, offset 0, byte access. */
	ck_assert_mem_eq(f + 244, "\x01\x08\x00\x01\x00\x06\0\0\0\0\0\0", 12);
	ck_assert_mem_eq(f + 256, "\x01\x08\x00\x01\x01\x06\0\0\0\0\0\0", 12);
	ck_assert_mem_eq(f + 268, "MINIVMM", 7);
}
END_TEST

static void check_madt(unsigned n)
{
	size_t used = build(n, 0);
	const uint8_t *m = madt_of(used), *p, *end = m + rd32(m + 4);
	unsigned lapics = 0, ioapics = 0, isos = 0, nmis = 0;

	ck_assert_uint_eq(rd32(m + 36), 0xFEE00000);
	for (p = m + 44; p < end; p += p[1]) {
		ck_assert_uint_ge(p[1], 2);
		ck_assert(p + p[1] <= end);
		switch (p[0]) {
		case 0:
			ck_assert_uint_eq(p[1], 8);
			ck_assert_uint_eq(p[3], lapics);        /* APIC IDs 0..n-1 */
			ck_assert_uint_eq(rd32(p + 4) & 1, 1);  /* enabled */
			lapics++;
			break;
		case 1:
			ck_assert_uint_eq(p[1], 12);
			ck_assert_uint_ge(p[2], n);             /* no clash with a LAPIC */
			ck_assert_uint_eq(rd32(p + 4), 0xFEC00000);
			ck_assert_uint_eq(rd32(p + 8), 0);
			ioapics++;
			break;
		case 2:         /* ISA IRQ0 -> GSI 2, flags conform to the bus */
			ck_assert_mem_eq(p, "\x02\x0A\x00\x00\x02\x00\x00\x00\x00\x00", 10);
			isos++;
			break;
		case 4:         /* LINT1 NMI on all processors */
			ck_assert_mem_eq(p, "\x04\x06\xFF\x00\x00\x01", 6);
			nmis++;
			break;
		default:
			ck_abort_msg("unexpected MADT entry type %u", p[0]);
		}
	}
	ck_assert_ptr_eq(p, end);
	ck_assert_uint_eq(lapics, n);
	ck_assert_uint_eq(ioapics, 1);
	ck_assert_uint_eq(isos, 1);
	ck_assert_uint_eq(nmis, 1);
}

START_TEST(madt_entries)
{
	check_madt(1);
	check_madt(4);
	check_madt(255);
}
END_TEST

/* --- A small AML walker for the subset the DSDT uses ------------------- */

enum obj { OBJ_INT, OBJ_STR, OBJ_BUF, OBJ_PKG, OBJ_METHOD };

struct named {
	char path[40];
	enum obj kind;
	uint64_t ival;                  /* integer; package: element count */
	const uint8_t *data;            /* string or buffer bytes, package's first int */
	size_t len;
};

struct walk {
	const uint8_t *aml;
	struct named names[256];
	unsigned nnames;
	unsigned devices;
};

/* Decode a PkgLength at p; returns its byte count, 0 if malformed. */
static unsigned pkglen_decode(const uint8_t *p, size_t avail, size_t *val)
{
	unsigned n = (p[0] >> 6) + 1;

	if (n > avail)
		return 0;
	if (n == 1) {
		*val = p[0] & 0x3F;
		return 1;
	}
	if (p[0] & 0x30)
		return 0;               /* bits 4-5 must be zero in multi-byte form */
	*val = p[0] & 0xF;
	for (unsigned i = 1; i < n; i++)
		*val |= (size_t)p[i] << (4 + 8 * (i - 1));
	return n;
}

/* A PkgLength at pos: returns the package end (pos + value), 0 if bad. */
static size_t pkg_end(const uint8_t *a, size_t pos, size_t end, size_t *body)
{
	size_t v;
	unsigned n = pkglen_decode(a + pos, end - pos, &v);

	if (!n || v < n || pos + v > end)
		return 0;
	*body = pos + n;
	return pos + v;
}

static bool seg_ok(const uint8_t *s)
{
	for (int i = 0; i < 4; i++) {
		bool lead = (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '_';

		if (!lead && (i == 0 || s[i] < '0' || s[i] > '9'))
			return false;
	}
	return true;
}

/* NameString -> dotted path relative to scope; returns new pos or 0. */
static size_t name_string(const uint8_t *a, size_t pos, size_t end, const char *scope,
			  char out[40])
{
	unsigned nseg = 1;
	bool root = false;

	if (pos < end && a[pos] == '\\') {
		root = true;
		pos++;
	}
	if (pos < end && a[pos] == 0x2E) {
		nseg = 2;
		pos++;
	} else if (pos + 1 < end && a[pos] == 0x2F) {
		nseg = a[pos + 1];
		pos += 2;
	}
	strcpy(out, root ? "\\" : scope);
	for (unsigned i = 0; i < nseg; i++, pos += 4) {
		if (pos + 4 > end || !seg_ok(a + pos) || strlen(out) + 6 > 40)
			return 0;
		if (strcmp(out, "\\"))
			strcat(out, ".");
		strncat(out, (const char *)a + pos, 4);
	}
	return pos;
}

/* An integer constant; returns new pos or 0. */
static size_t integer(const uint8_t *a, size_t pos, size_t end, uint64_t *v)
{
	static const unsigned width[] = { [0x0A] = 1, [0x0B] = 2, [0x0C] = 4, [0x0E] = 8 };
	uint8_t op = pos < end ? a[pos] : 0xFF;
	unsigned w;

	if (op == 0x00 || op == 0x01) {
		*v = op;
		return pos + 1;
	}
	if (op > 0x0E || !(w = width[op]) || pos + 1 + w > end)
		return 0;
	*v = 0;
	for (unsigned i = 0; i < w; i++)
		*v |= (uint64_t)a[pos + 1 + i] << (8 * i);
	return pos + 1 + w;
}

static size_t data_object(struct walk *w, size_t pos, size_t end, struct named *o)
{
	const uint8_t *a = w->aml;
	size_t body, pend;

	if (pos >= end)
		return 0;
	switch (a[pos]) {
	case 0x0D:
		o->kind = OBJ_STR;
		o->data = a + pos + 1;
		o->len = strnlen((const char *)o->data, end - pos - 1);
		return pos + 1 + o->len < end ? pos + 2 + o->len : 0;
	case 0x11:
		o->kind = OBJ_BUF;
		if (!(pend = pkg_end(a, pos + 1, end, &body)))
			return 0;
		if (!(body = integer(a, body, pend, &o->ival)) || body + o->ival != pend)
			return 0;               /* BufferSize must match the bytes */
		o->data = a + body;
		o->len = o->ival;
		return pend;
	case 0x12:
		o->kind = OBJ_PKG;
		if (!(pend = pkg_end(a, pos + 1, end, &body)) || body >= pend)
			return 0;
		o->ival = a[body++];
		o->data = a + body;
		for (unsigned i = 0; i < o->ival; i++) {
			uint64_t v;

			if (body >= pend || !(body = integer(a, body, pend, &v)))
				return 0;
		}
		return body == pend ? pend : 0;
	default:
		o->kind = OBJ_INT;
		return integer(a, pos, end, &o->ival);
	}
}

/* Walk a TermList in [pos, end) under scope; false on any inconsistency. */
static bool term_list(struct walk *w, size_t pos, size_t end, const char *scope)
{
	const uint8_t *a = w->aml;

	while (pos < end) {
		char path[40];
		size_t body, pend;

		if (a[pos] == 0x08) {
			struct named *o = &w->names[w->nnames];

			if (w->nnames == 256 || !(pos = name_string(a, pos + 1, end, scope, o->path)))
				return false;
			if (!(pos = data_object(w, pos, end, o)))
				return false;
			w->nnames++;
			continue;
		}
		if (a[pos] == 0x14) {           /* Method: name, flags, body kept as bytes */
			struct named *o = &w->names[w->nnames];

			if (w->nnames == 256 || !(pend = pkg_end(a, pos + 1, end, &body)) ||
			    !(body = name_string(a, body, pend, scope, o->path)) || body >= pend)
				return false;
			o->kind = OBJ_METHOD;
			o->ival = a[body];      /* MethodFlags */
			o->data = a + body + 1;
			o->len = pend - body - 1;
			w->nnames++;
			pos = pend;
			continue;
		}
		if (a[pos] == 0x10 || (a[pos] == 0x5B && pos + 1 < end && a[pos + 1] == 0x82)) {
			if (a[pos] == 0x5B)
				w->devices++;
			pos += a[pos] == 0x10 ? 1 : 2;
			if (!(pend = pkg_end(a, pos, end, &body)))
				return false;
			if (!(body = name_string(a, body, pend, scope, path)))
				return false;
			if (!term_list(w, body, pend, path))
				return false;
			pos = pend;
			continue;
		}
		return false;
	}
	return pos == end;
}

static struct walk *walk_dsdt(size_t used)
{
	const uint8_t *d = dsdt_of(used);
	struct walk *w = calloc(1, sizeof(*w));

	ck_assert_ptr_nonnull(w);
	ck_assert_uint_eq(d[8], 2);
	w->aml = d;
	ck_assert_msg(term_list(w, 36, rd32(d + 4), "\\"), "AML walk failed");
	return w;
}

static const struct named *find(const struct walk *w, const char *path)
{
	for (unsigned i = 0; i < w->nnames; i++)
		if (!strcmp(w->names[i].path, path))
			return &w->names[i];
	return NULL;
}

static void expect_int(const struct walk *w, const char *path, uint64_t v)
{
	const struct named *o = find(w, path);

	ck_assert_msg(o != NULL, "%s missing", path);
	ck_assert_int_eq(o->kind, OBJ_INT);
	ck_assert_uint_eq(o->ival, v);
}

/* A resource template must be a chain of descriptors ending in End Tag. */
static void check_template(const struct named *o)
{
	size_t i = 0;

	ck_assert_int_eq(o->kind, OBJ_BUF);
	while (i < o->len && o->data[i] != 0x79) {
		if (o->data[i] & 0x80)
			i += 3 + rd16(o->data + i + 1);
		else
			i += 1 + (o->data[i] & 7);
	}
	ck_assert_uint_eq(i + 2, o->len);
	ck_assert_uint_eq(o->data[i + 1], 0);
}

static void check_legacy(const struct walk *w)
{
	const struct named *crs, *s5;

	expect_int(w, "\\_SB_.COM1._HID", 0x0105D041);          /* PNP0501 */
	expect_int(w, "\\_SB_.COM1._UID", 0);
	crs = find(w, "\\_SB_.COM1._CRS");
	ck_assert_ptr_nonnull(crs);
	check_template(crs);
	ck_assert_mem_eq(crs->data, "\x47\x01\xF8\x03\xF8\x03\x01\x08\x22\x10\x00", 11);
	expect_int(w, "\\_SB_.KBD_._HID", 0x0303D041);          /* PNP0303 */
	crs = find(w, "\\_SB_.KBD_._CRS");
	ck_assert_ptr_nonnull(crs);
	check_template(crs);
	ck_assert_mem_eq(crs->data, "\x47\x01\x60\x00\x60\x00\x01\x01"
			 "\x47\x01\x64\x00\x64\x00\x01\x01\x22\x02\x00", 19);
	s5 = find(w, "\\_S5_");
	ck_assert_ptr_nonnull(s5);
	ck_assert_int_eq(s5->kind, OBJ_PKG);
	ck_assert_uint_eq(s5->ival, 4);
	ck_assert_uint_eq(s5->data[0], 0x0A);                   /* BytePrefix 5 */
	ck_assert_uint_eq(s5->data[1], 5);
}

static const struct named *find_vr(const struct walk *w, unsigned i, const char *name)
{
	char p[40];
	const struct named *o;

	snprintf(p, sizeof(p), "\\_SB_.VR%02u.%s", i, name);
	o = find(w, p);
	ck_assert_msg(o != NULL, "%s missing", p);
	return o;
}

static void check_virtio(const struct walk *w, unsigned i)
{
	const struct named *o = find_vr(w, i, "_HID");
	const uint8_t *r;

	ck_assert_int_eq(o->kind, OBJ_STR);
	ck_assert_str_eq((const char *)o->data, "LNRO0005");
	o = find_vr(w, i, "_UID");
	ck_assert(o->kind == OBJ_INT && o->ival == i);
	o = find_vr(w, i, "_CCA");
	ck_assert(o->kind == OBJ_INT && o->ival == 1);
	o = find_vr(w, i, "_CRS");
	check_template(o);
	r = o->data;
	ck_assert_uint_eq(r[0], 0x86);                          /* Memory32Fixed */
	ck_assert_uint_eq(r[3], 1);                             /* read-write */
	ck_assert_uint_eq(rd32(r + 4), 0xD0000000 + i * 0x1000);
	ck_assert_uint_eq(rd32(r + 8), 0x1000);
	r += 12;
	ck_assert_uint_eq(r[0], 0x89);                          /* Extended IRQ */
	ck_assert_uint_eq(r[3], 0x03);          /* consumer, edge, high, exclusive */
	ck_assert_uint_eq(r[4], 1);
	ck_assert_uint_eq(rd32(r + 5), 5 + i);
}

START_TEST(dsdt_devices)
{
	static const unsigned counts[] = { 0, 1, 3, 12, ACPI_MAX_MMIO_DEVS };

	for (unsigned c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		struct walk *w = walk_dsdt(build(2, counts[c]));
		char next[40];

		check_legacy(w);
		ck_assert_uint_eq(w->devices, 2 + counts[c]);   /* COM1, KBD_, VRnn */
		for (unsigned i = 0; i < counts[c]; i++)
			check_virtio(w, i);
		snprintf(next, sizeof(next), "\\_SB_.VR%02u._HID", counts[c]);
		ck_assert_ptr_null(find(w, next));
		free(w);
	}
}
END_TEST

static void expect_str(const struct walk *w, const char *path, const char *s)
{
	const struct named *o = find(w, path);

	ck_assert_msg(o != NULL, "%s missing", path);
	ck_assert_int_eq(o->kind, OBJ_STR);
	ck_assert_str_eq((const char *)o->data, s);
}

/* VGEN with ADDR, and the GED whose _EVT notifies it: what Linux's vmgenid
 * and evged drivers read. */
START_TEST(dsdt_vmgenid)
{
	static const uint8_t notify[] = { 0x86, '\\', 0x2E, '_', 'S', 'B', '_', 'V', 'G', 'E', 'N',
					  0x0A, 0x80 };
	struct acpi_config c = make_cfg(2, 1);
	const struct named *o;
	struct walk *w;
	uint64_t lo, hi;
	size_t p;

	c.vmgenid_addr = 0x1234567FF000ULL;
	c.ged_gsi = 3;
	w = walk_dsdt(acpi_build(buf, sizeof(buf), BASE, &c));
	ck_assert_uint_eq(w->devices, 2 + 1 + 2);       /* COM1, KBD_, VR00, VGEN, GED0 */
	expect_str(w, "\\_SB_.VGEN._HID", "VMGENCTR");
	expect_str(w, "\\_SB_.VGEN._CID", "VM_Gen_Counter");
	o = find(w, "\\_SB_.VGEN.ADDR");
	ck_assert_ptr_nonnull(o);
	ck_assert_int_eq(o->kind, OBJ_PKG);
	ck_assert_uint_eq(o->ival, 2);
	p = integer(w->aml, (size_t)(o->data - w->aml), (size_t)(o->data - w->aml) + 16, &lo);
	ck_assert_uint_gt(p, 0);
	ck_assert_uint_gt(integer(w->aml, p, p + 16, &hi), 0);
	ck_assert_uint_eq(lo | hi << 32, c.vmgenid_addr);
	expect_str(w, "\\_SB_.GED0._HID", "ACPI0013");
	o = find(w, "\\_SB_.GED0._CRS");
	ck_assert_ptr_nonnull(o);
	check_template(o);
	ck_assert_uint_eq(o->data[0], 0x89);                    /* Extended IRQ */
	ck_assert_uint_eq(o->data[3], 0x03);                    /* consumer, edge */
	ck_assert_uint_eq(rd32(o->data + 5), 3);
	o = find(w, "\\_SB_.GED0._EVT");
	ck_assert_ptr_nonnull(o);
	ck_assert_int_eq(o->kind, OBJ_METHOD);
	ck_assert_uint_eq(o->ival, 1);                          /* one argument */
	ck_assert_uint_eq(o->len, sizeof(notify));
	ck_assert_mem_eq(o->data, notify, sizeof(notify));
	free(w);

	/* Without an address, neither device; a misaligned one is refused. */
	c.vmgenid_addr = 0;
	w = walk_dsdt(acpi_build(buf, sizeof(buf), BASE, &c));
	ck_assert_ptr_null(find(w, "\\_SB_.VGEN._HID"));
	ck_assert_ptr_null(find(w, "\\_SB_.GED0._HID"));
	free(w);
	c.vmgenid_addr = 0xFF004;
	ck_assert_uint_eq(acpi_build(buf, sizeof(buf), BASE, &c), 0);
}
END_TEST

START_TEST(buffer_too_small)
{
	struct acpi_config c = make_cfg(8, ACPI_MAX_MMIO_DEVS);
	size_t used = acpi_build(buf, sizeof(buf), BASE, &c);
	static uint8_t small[BUFSZ];

	ck_assert_uint_gt(used, 0);
	/* Every shorter buffer fails, and nothing past cap is written. */
	for (size_t cap = 0; cap < used; cap++) {
		size_t i = cap;

		memset(small, 0xA5, used + 16);
		ck_assert_uint_eq(acpi_build(small, cap, BASE, &c), 0);
		/* One assertion per cap: each one costs a pipe write in Check. */
		while (i < used + 16 && small[i] == 0xA5)
			i++;
		ck_assert_uint_eq(i, used + 16);
	}
	ck_assert_uint_eq(acpi_build(small, used, BASE, &c), used);
	ck_assert_mem_eq(small, buf, used);
}
END_TEST

START_TEST(invalid_config)
{
	struct acpi_config c = make_cfg(0, 0);

	ck_assert_uint_eq(acpi_build(buf, sizeof(buf), BASE, &c), 0);
	c.ncpus = 256;
	ck_assert_uint_eq(acpi_build(buf, sizeof(buf), BASE, &c), 0);
	c.ncpus = 255;
	ck_assert_uint_gt(acpi_build(buf, sizeof(buf), BASE, &c), 0);
	c.nr_mmio_devs = ACPI_MAX_MMIO_DEVS + 1;
	ck_assert_uint_eq(acpi_build(buf, sizeof(buf), BASE, &c), 0);
	c = make_cfg(1, 1);
	c.mmio_devs[0].base = 0x100000000ULL;           /* Memory32Fixed can't say it */
	ck_assert_uint_eq(acpi_build(buf, sizeof(buf), BASE, &c), 0);
	c = make_cfg(1, 0);
	ck_assert_uint_eq(acpi_build(buf, sizeof(buf), BASE + 4, &c), 0);
	ck_assert_uint_eq(acpi_build(NULL, sizeof(buf), BASE, &c), 0);
}
END_TEST

START_TEST(addresses_follow_base)
{
	struct acpi_config c = make_cfg(2, 2);
	uint64_t base = 0x7FF00000ULL;
	size_t n = acpi_build(buf, sizeof(buf), base, &c);
	const uint8_t *x = buf + (rd64(buf + 24) - base);

	ck_assert_uint_gt(n, 0);
	ck_assert_mem_eq(x, "XSDT", 4);
	ck_assert_mem_eq(buf + (rd64(x + 36) - base), "FACP", 4);
	ck_assert_mem_eq(buf + (rd64(x + 44) - base), "APIC", 4);
}
END_TEST

/* --- AML writer --------------------------------------------------------- */

static void check_pkglen(size_t body, unsigned want_bytes)
{
	uint8_t out[4];
	size_t v;
	unsigned n = aml_pkglen_encode(out, body);

	ck_assert_uint_eq(n, want_bytes);
	ck_assert_uint_eq(pkglen_decode(out, 4, &v), n);
	ck_assert_uint_eq(v, body + n);
}

START_TEST(pkglen_boundaries)
{
	uint8_t out[4];

	check_pkglen(0, 1);
	check_pkglen(62, 1);                    /* total 63: largest 1-byte form */
	check_pkglen(63, 2);                    /* total would be 64 */
	check_pkglen(4093, 2);                  /* total 4095: largest 2-byte */
	check_pkglen(4094, 3);
	check_pkglen(4095, 3);
	check_pkglen(4096, 3);
	check_pkglen((1 << 20) - 4, 3);         /* total 1 MiB - 1: largest 3-byte */
	check_pkglen((1 << 20) - 3, 4);
	check_pkglen(1 << 20, 4);
	check_pkglen(AML_PKGLEN_MAX - 4, 4);
	ck_assert_uint_eq(aml_pkglen_encode(out, AML_PKGLEN_MAX - 3), 0);
}
END_TEST

/* aml_close inserts the PkgLength in front of a body already written. */
static void check_close(size_t body)
{
	size_t cap = body + 16, mark, v, plen;
	uint8_t *b = malloc(cap);
	struct aml a;

	ck_assert_ptr_nonnull(b);
	aml_init(&a, b, cap);
	mark = aml_package_open(&a, 0);
	for (size_t i = 1; i < body; i++)
		aml_byte(&a, i);
	aml_close(&a, mark);
	ck_assert(aml_ok(&a));
	plen = pkglen_decode(b + 1, cap - 1, &v);
	ck_assert_uint_gt(plen, 0);
	ck_assert_uint_eq(v, body + plen);
	ck_assert_uint_eq(a.len, 1 + v);
	ck_assert_uint_eq(b[1 + plen], 0);      /* NumElements moved intact */
	ck_assert_uint_eq(b[a.len - 1], (uint8_t)(body - 1));
	free(b);
}

START_TEST(close_boundaries)
{
	static const size_t sizes[] = { 1, 62, 63, 64, 4093, 4094, 4096,
					(1 << 20) - 4, (1 << 20) - 3, 1 << 20 };

	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		check_close(sizes[i]);
}
END_TEST

START_TEST(aml_integers_and_names)
{
	uint8_t b[64];
	struct aml a;

	aml_init(&a, b, sizeof(b));
	aml_integer(&a, 0);
	aml_integer(&a, 1);
	aml_integer(&a, 0xFF);
	aml_integer(&a, 0x100);
	aml_integer(&a, 0x10000);
	aml_integer(&a, 0x100000000ULL);
	ck_assert(aml_ok(&a));
	ck_assert_uint_eq(a.len, 1 + 1 + 2 + 3 + 5 + 9);
	ck_assert_mem_eq(b, "\x00\x01\x0A\xFF\x0B\x00\x01\x0C\x00\x00\x01\x00\x0E", 13);

	ck_assert_uint_eq(aml_eisaid("PNP0501"), 0x0105D041);
	ck_assert_uint_eq(aml_eisaid("PNP0303"), 0x0303D041);
	ck_assert_uint_eq(aml_eisaid("pnp0303"), 0);
	ck_assert_uint_eq(aml_eisaid("PNP030"), 0);

	aml_init(&a, b, sizeof(b));
	aml_name_string(&a, "\\_SB.PCI0.S1");
	ck_assert(aml_ok(&a));
	ck_assert_mem_eq(b, "\\\x2F\x03_SB_PCI0S1__", 15);
	aml_init(&a, b, sizeof(b));
	aml_name_string(&a, "_SB.COM1");
	ck_assert_mem_eq(b, "\x2E_SB_COM1", 9);
	for (const char **n = (const char *[]){ "lower", "TOOLONG", "1ABC", "A..B", NULL }; *n; n++) {
		aml_init(&a, b, sizeof(b));
		aml_name_string(&a, *n);
		ck_assert_msg(a.invalid, "%s accepted", *n);
	}
}
END_TEST

START_TEST(aml_overflow_is_bounded)
{
	uint8_t b[16];
	struct aml a;
	size_t dev;

	memset(b, 0xA5, sizeof(b));
	aml_init(&a, b, 8);
	dev = aml_device_open(&a, "DEV0");
	aml_name_decl(&a, "_HID");
	aml_string(&a, "LNRO0005");
	aml_close(&a, dev);
	ck_assert(a.overflow);
	ck_assert(!aml_ok(&a));
	ck_assert_uint_le(a.len, 8);
	for (int i = 8; i < 16; i++)
		ck_assert_uint_eq(b[i], 0xA5);
}
END_TEST

static Suite *acpi_suite(void)
{
	Suite *s = suite_create("acpi");
	TCase *t = tcase_create("tables");
	TCase *aml = tcase_create("aml");

	tcase_add_test(t, rsdp_and_xsdt);
	tcase_add_test(t, fadt_fields);
	tcase_add_test(t, madt_entries);
	tcase_add_test(t, dsdt_devices);
	tcase_add_test(t, dsdt_vmgenid);
	tcase_add_test(t, buffer_too_small);
	tcase_add_test(t, invalid_config);
	tcase_add_test(t, addresses_follow_base);
	tcase_set_timeout(t, 30);
	tcase_add_test(aml, pkglen_boundaries);
	tcase_add_test(aml, close_boundaries);
	tcase_add_test(aml, aml_integers_and_names);
	tcase_add_test(aml, aml_overflow_is_bounded);
	tcase_set_timeout(aml, 30);
	suite_add_tcase(s, t);
	suite_add_tcase(s, aml);
	return s;
}

int main(void)
{
	return check_run(acpi_suite());
}
