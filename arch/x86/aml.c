// SPDX-License-Identifier: MIT
/*
 * AML byte-code writer. Opcode values and encodings follow the ACPI
 * specification, chapter 20 ("ACPI Machine Language Specification") and
 * section 6.4 (resource data types).
 */
#include <string.h>

#include "arch/x86/aml.h"

#define AML_ZERO_OP             0x00
#define AML_ONE_OP              0x01
#define AML_NAME_OP             0x08
#define AML_BYTE_PREFIX         0x0A
#define AML_WORD_PREFIX         0x0B
#define AML_DWORD_PREFIX        0x0C
#define AML_STRING_PREFIX       0x0D
#define AML_QWORD_PREFIX        0x0E
#define AML_SCOPE_OP            0x10
#define AML_BUFFER_OP           0x11
#define AML_PACKAGE_OP          0x12
#define AML_METHOD_OP           0x14
#define AML_DUAL_NAME_PREFIX    0x2E
#define AML_MULTI_NAME_PREFIX   0x2F
#define AML_EXT_OP_PREFIX       0x5B
#define AML_DEVICE_OP           0x82    /* after AML_EXT_OP_PREFIX */
#define AML_NOTIFY_OP           0x86
#define AML_ROOT_CHAR           '\\'

/* Resource descriptor tags: small items are (type << 3 | length). */
#define RES_IRQ_NOFLAGS         0x22    /* type 4, 2 bytes: mask */
#define RES_IO                  0x47    /* type 8, 7 bytes */
#define RES_END                 0x79    /* type 15, 1 byte: checksum */
#define RES_MEM32_FIXED         0x86    /* large item 6 */
#define RES_EXT_IRQ             0x89    /* large item 9 */
#define RES_IO_DECODE16         0x01    /* decodes all 16 address bits */

void aml_init(struct aml *a, uint8_t *buf, size_t cap)
{
	*a = (struct aml){ .buf = buf, .cap = cap };
}

static bool aml_reserve(struct aml *a, size_t n)
{
	if (a->overflow || n > a->cap - a->len) {
		a->overflow = true;
		return false;
	}
	return true;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (!aml_reserve(a, n))
		return;
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

static void aml_le(struct aml *a, uint64_t v, unsigned n)
{
	uint8_t b[8];

	for (unsigned i = 0; i < n; i++)
		b[i] = v >> (8 * i);
	aml_bytes(a, b, n);
}

/*
 * PkgLength: the top two bits of the lead byte say how many bytes follow.
 * With none, the lead byte holds a 6-bit length; otherwise it holds the
 * low 4 bits and each following byte 8 more. The value counts its own
 * bytes, so the size is chosen as the smallest that fits body + itself.
 */
unsigned aml_pkglen_encode(uint8_t out[4], size_t body_len)
{
	static const size_t max[] = { 0x3F, 0xFFF, 0xFFFFF, AML_PKGLEN_MAX };
	unsigned n;
	size_t v;

	for (n = 1; n <= 4; n++)
		if (body_len <= max[n - 1] - n)
			break;
	if (n > 4)
		return 0;
	v = body_len + n;
	if (n == 1) {
		out[0] = v;
		return 1;
	}
	out[0] = ((n - 1) << 6) | (v & 0xF);
	for (unsigned i = 1; i < n; i++)
		out[i] = v >> (4 + 8 * (i - 1));
	return n;
}

void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0) {
		aml_byte(a, AML_ZERO_OP);
	} else if (v == 1) {
		aml_byte(a, AML_ONE_OP);
	} else if (v <= 0xFF) {
		aml_byte(a, AML_BYTE_PREFIX);
		aml_le(a, v, 1);
	} else if (v <= 0xFFFF) {
		aml_byte(a, AML_WORD_PREFIX);
		aml_le(a, v, 2);
	} else if (v <= 0xFFFFFFFF) {
		aml_byte(a, AML_DWORD_PREFIX);
		aml_le(a, v, 4);
	} else {
		aml_byte(a, AML_QWORD_PREFIX);
		aml_le(a, v, 8);
	}
}

void aml_string(struct aml *a, const char *s)
{
	/* AML strings are ASCII 0x01-0x7F; anything else cannot be encoded. */
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p > 0x7F)
			a->invalid = true;
	aml_byte(a, AML_STRING_PREFIX);
	aml_bytes(a, s, strlen(s) + 1);
}

static bool name_lead_char(char c)
{
	return (c >= 'A' && c <= 'Z') || c == '_';
}

static bool name_char(char c)
{
	return name_lead_char(c) || (c >= '0' && c <= '9');
}

/* Parse one segment of up to 4 characters into seg (padded with '_'). */
static const char *name_seg(const char *p, char seg[4], bool *ok)
{
	unsigned n = 0;

	memset(seg, '_', 4);
	for (; *p && *p != '.'; p++) {
		if (n == 4 || !(n ? name_char(*p) : name_lead_char(*p))) {
			*ok = false;
			return p;
		}
		seg[n++] = *p;
	}
	if (!n)
		*ok = false;
	return *p == '.' ? p + 1 : p;
}

void aml_name_string(struct aml *a, const char *name)
{
	char segs[255][4];
	unsigned nseg = 0;
	bool ok = true;

	if (*name == AML_ROOT_CHAR) {
		aml_byte(a, AML_ROOT_CHAR);
		name++;
	}
	while (*name && ok && nseg < 255)
		name = name_seg(name, segs[nseg++], &ok);
	if (!ok || *name) {
		a->invalid = true;
		return;
	}
	/* A bare root ("\") is a NameString with a NullName. */
	if (nseg == 0) {
		aml_byte(a, 0x00);
		return;
	}
	if (nseg == 2) {
		aml_byte(a, AML_DUAL_NAME_PREFIX);
	} else if (nseg > 2) {
		aml_byte(a, AML_MULTI_NAME_PREFIX);
		aml_byte(a, nseg);
	}
	aml_bytes(a, segs, 4 * nseg);
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * EISA ID: three upper-case letters in 5 bits each (A = 1) and four hex
 * digits, stored big-endian byte by byte; as a little-endian DWord the
 * first byte in memory is the low byte. Returns 0 for a malformed ID.
 */
uint32_t aml_eisaid(const char *id)
{
	uint8_t b[4];
	uint16_t mfg = 0;

	if (strlen(id) != 7)
		return 0;
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z')
			return 0;
		mfg = (mfg << 5) | (id[i] - 'A' + 1);
	}
	b[0] = mfg >> 8;
	b[1] = mfg;
	for (int i = 0; i < 2; i++) {
		int hi = hex_digit(id[3 + 2 * i]), lo = hex_digit(id[4 + 2 * i]);

		if (hi < 0 || lo < 0)
			return 0;
		b[2 + i] = hi << 4 | lo;
	}
	return b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24;
}

void aml_eisaid_integer(struct aml *a, const char *id)
{
	uint32_t v = aml_eisaid(id);

	if (!v)
		a->invalid = true;
	/* Always a DWord, as ASL compilers emit it, even if it would fit less. */
	aml_byte(a, AML_DWORD_PREFIX);
	aml_le(a, v, 4);
}

void aml_name_decl(struct aml *a, const char *name)
{
	aml_byte(a, AML_NAME_OP);
	aml_name_string(a, name);
}

size_t aml_scope_open(struct aml *a, const char *name)
{
	size_t mark;

	aml_byte(a, AML_SCOPE_OP);
	mark = a->len;
	aml_name_string(a, name);
	return mark;
}

size_t aml_device_open(struct aml *a, const char *name)
{
	size_t mark;

	aml_byte(a, AML_EXT_OP_PREFIX);
	aml_byte(a, AML_DEVICE_OP);
	mark = a->len;
	aml_name_string(a, name);
	return mark;
}

size_t aml_package_open(struct aml *a, uint8_t nelems)
{
	size_t mark;

	aml_byte(a, AML_PACKAGE_OP);
	mark = a->len;
	aml_byte(a, nelems);
	return mark;
}

size_t aml_method_open(struct aml *a, const char *name, uint8_t nargs)
{
	size_t mark;

	if (nargs > 7)
		a->invalid = true;
	aml_byte(a, AML_METHOD_OP);
	mark = a->len;
	aml_name_string(a, name);
	aml_byte(a, nargs & 7);         /* MethodFlags: not serialized, SyncLevel 0 */
	return mark;
}

void aml_notify(struct aml *a, const char *object, uint64_t value)
{
	aml_byte(a, AML_NOTIFY_OP);
	aml_name_string(a, object);
	aml_integer(a, value);
}

/* Insert the PkgLength for everything written since mark, in front of it. */
void aml_close(struct aml *a, size_t mark)
{
	uint8_t pl[4];
	unsigned n;

	if (a->overflow || mark > a->len)
		return;
	n = aml_pkglen_encode(pl, a->len - mark);
	if (!n) {
		a->invalid = true;
		return;
	}
	if (!aml_reserve(a, n))
		return;
	memmove(a->buf + mark + n, a->buf + mark, a->len - mark);
	memcpy(a->buf + mark, pl, n);
	a->len += n;
}

void aml_buffer(struct aml *a, const uint8_t *bytes, size_t n)
{
	size_t mark;

	aml_byte(a, AML_BUFFER_OP);
	mark = a->len;
	aml_integer(a, n);              /* BufferSize */
	aml_bytes(a, bytes, n);
	aml_close(a, mark);
}

void aml_res_io(struct aml *a, uint16_t base, uint8_t len)
{
	/* Fixed location: minimum == maximum, alignment 1. */
	aml_byte(a, RES_IO);
	aml_byte(a, RES_IO_DECODE16);
	aml_le(a, base, 2);
	aml_le(a, base, 2);
	aml_byte(a, 1);
	aml_byte(a, len);
}

void aml_res_irq_noflags(struct aml *a, uint8_t irq)
{
	/* Without the flags byte the IRQ is edge-triggered, active high. */
	if (irq > 15)
		a->invalid = true;
	aml_byte(a, RES_IRQ_NOFLAGS);
	aml_le(a, 1U << (irq & 15), 2);
}

void aml_res_mem32_fixed(struct aml *a, bool rw, uint32_t base, uint32_t size)
{
	aml_byte(a, RES_MEM32_FIXED);
	aml_le(a, 9, 2);
	aml_byte(a, rw ? AML_RES_RW : 0);
	aml_le(a, base, 4);
	aml_le(a, size, 4);
}

void aml_res_ext_irq(struct aml *a, uint8_t flags, uint32_t gsi)
{
	/* One interrupt, no resource source: flags, count, the DWord. */
	aml_byte(a, RES_EXT_IRQ);
	aml_le(a, 6, 2);
	aml_byte(a, flags);
	aml_byte(a, 1);
	aml_le(a, gsi, 4);
}

void aml_res_end(struct aml *a)
{
	/* Checksum 0 means "the template is valid, don't check". */
	aml_byte(a, RES_END);
	aml_byte(a, 0);
}
