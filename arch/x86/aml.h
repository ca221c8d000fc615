/* SPDX-License-Identifier: MIT */
/*
 * A tiny AML (ACPI Machine Language) byte-code writer: just enough for a
 * DSDT with a few devices, names, packages and resource templates.
 *
 * Every write is bounded by the caller's buffer. The first write that does
 * not fit sets `overflow` and every later write is ignored, so a caller can
 * emit a whole table and check once at the end.
 *
 * Objects with a PkgLength (Scope, Device, Package) are written as
 * open/close pairs: open writes the opcode and remembers where the body
 * starts; close measures the body and inserts the PkgLength in front of it,
 * because its encoded size (1-4 bytes) depends on the body's size.
 */
#ifndef ARCH_X86_AML_H
#define ARCH_X86_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml {
	uint8_t *buf;
	size_t cap;
	size_t len;
	bool overflow;          /* a write did not fit: contents are invalid */
	bool invalid;           /* a bad name or argument was given */
};

/* Largest value a PkgLength can encode (28 bits), including itself. */
#define AML_PKGLEN_MAX 0x0FFFFFFFU

void aml_init(struct aml *a, uint8_t *buf, size_t cap);
static inline bool aml_ok(const struct aml *a) { return !a->overflow && !a->invalid; }

void aml_byte(struct aml *a, uint8_t b);
void aml_bytes(struct aml *a, const void *p, size_t n);

/*
 * Encode the PkgLength for a body of body_len bytes into out (4 bytes
 * room). The encoded value counts the PkgLength bytes themselves. Returns
 * the number of bytes written (1-4), or 0 if the body is too large.
 */
unsigned aml_pkglen_encode(uint8_t out[4], size_t body_len);

/* Integers with the shortest encoding: Zero, One, Byte/Word/DWord/QWord. */
void aml_integer(struct aml *a, uint64_t v);
/* A String object (StringPrefix, ASCII, NUL). */
void aml_string(struct aml *a, const char *s);
/* A NameString: optional '\' root prefix, then '.'-separated segments of
 * at most 4 characters each (padded with '_'). */
void aml_name_string(struct aml *a, const char *name);
/* The DWord integer that EISAID("PNP0501") compiles to. */
uint32_t aml_eisaid(const char *id);
void aml_eisaid_integer(struct aml *a, const char *id);

/* Name(name, ...): write the NameOp and name; the caller writes the object. */
void aml_name_decl(struct aml *a, const char *name);

/* Scope/Device/Package: open returns the mark aml_close needs. */
size_t aml_scope_open(struct aml *a, const char *name);
size_t aml_device_open(struct aml *a, const char *name);
size_t aml_package_open(struct aml *a, uint8_t nelems);
void aml_close(struct aml *a, size_t mark);
/* Method(name, nargs, NotSerialized): open returns the mark aml_close needs. */
size_t aml_method_open(struct aml *a, const char *name, uint8_t nargs);
/* Notify(object, value): inside a method body. */
void aml_notify(struct aml *a, const char *object, uint64_t value);

/* A Buffer object holding bytes[0..n) (e.g. a resource template). */
void aml_buffer(struct aml *a, const uint8_t *bytes, size_t n);

/*
 * Resource descriptors, written into a struct aml used as scratch space for
 * a resource template; finish with aml_res_end and pass the bytes to
 * aml_buffer.
 */
#define AML_RES_RW              (1U << 0)       /* Memory32Fixed: read-write */
#define AML_EXTIRQ_CONSUMER     (1U << 0)
#define AML_EXTIRQ_EDGE         (1U << 1)
#define AML_EXTIRQ_ACTIVE_LOW   (1U << 2)
#define AML_EXTIRQ_SHARED       (1U << 3)
#define AML_EXTIRQ_WAKE         (1U << 4)

void aml_res_io(struct aml *a, uint16_t base, uint8_t len);
void aml_res_irq_noflags(struct aml *a, uint8_t irq);
void aml_res_mem32_fixed(struct aml *a, bool rw, uint32_t base, uint32_t size);
void aml_res_ext_irq(struct aml *a, uint8_t flags, uint32_t gsi);
void aml_res_end(struct aml *a);

#endif
