// SPDX-License-Identifier: MIT
/*
 * libfdt's sequential-write API builds the tree front to back; when the
 * buffer fills we double it and fdt_resize() moves the tree. The reader
 * runs fdt_check_full() once, so later lookups cannot walk out of bounds.
 */
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration/state.h"
#include "vmm/log.h"

#define STATE_INITIAL_SIZE 4096

int state_writer_init(struct state_writer *w)
{
	memset(w, 0, sizeof(*w));
	w->cap = STATE_INITIAL_SIZE;
	w->fdt = calloc(1, w->cap);     /* zeroed: no stray bytes reach a stream */
	if (!w->fdt)
		return -1;
	w->err = fdt_create(w->fdt, (int)w->cap);
	if (!w->err)
		w->err = fdt_finish_reservemap(w->fdt);
	if (!w->err)
		w->err = fdt_begin_node(w->fdt, "");
	return w->err ? -1 : 0;
}

/* Run `op` again after growing the buffer while libfdt says NOSPACE. */
#define STATE_RETRY(w, op) do {                                             \
		int __r;                                                    \
		if ((w)->err)                                               \
			break;                                              \
		while ((__r = (op)) == -FDT_ERR_NOSPACE && state_grow(w) == 0) \
			;                                                   \
		if (__r < 0)                                                \
			(w)->err = __r;                                     \
	} while (0)

static int state_grow(struct state_writer *w)
{
	size_t cap = w->cap * 2;
	void *p;

	if (cap > STATE_MAX_SIZE)
		return -1;
	p = calloc(1, cap);
	if (!p || fdt_resize(w->fdt, p, (int)cap) < 0) {
		free(p);
		return -1;
	}
	free(w->fdt);
	w->fdt = p;
	w->cap = cap;
	return 0;
}

void state_node_begin(struct state_writer *w, const char *name, uint32_t version)
{
	STATE_RETRY(w, fdt_begin_node(w->fdt, name));
	STATE_RETRY(w, fdt_property_u32(w->fdt, "version", version));
	w->depth++;
}

void state_node_end(struct state_writer *w)
{
	STATE_RETRY(w, fdt_end_node(w->fdt));
	w->depth--;
}

void state_put_u32(struct state_writer *w, const char *prop, uint32_t v)
{
	STATE_RETRY(w, fdt_property_u32(w->fdt, prop, v));
}

void state_put_u64(struct state_writer *w, const char *prop, uint64_t v)
{
	STATE_RETRY(w, fdt_property_u64(w->fdt, prop, v));
}

void state_put_bytes(struct state_writer *w, const char *prop, const void *p, size_t len)
{
	if (len > STATE_MAX_SIZE && !w->err)
		w->err = -FDT_ERR_NOSPACE;
	STATE_RETRY(w, fdt_property(w->fdt, prop, p, (int)len));
}

void state_put_str(struct state_writer *w, const char *prop, const char *s)
{
	STATE_RETRY(w, fdt_property_string(w->fdt, prop, s));
}

int state_writer_finish(struct state_writer *w, void **blob, size_t *len)
{
	STATE_RETRY(w, fdt_end_node(w->fdt));
	STATE_RETRY(w, fdt_finish(w->fdt));
	if (w->err || w->depth) {
		pr_err("cannot build device state: %s",
		       w->err ? fdt_strerror(w->err) : "unbalanced nodes");
		return -1;
	}
	*blob = w->fdt;
	*len = fdt_totalsize(w->fdt);
	w->fdt = NULL;
	return 0;
}

void state_writer_free(struct state_writer *w)
{
	free(w->fdt);
	w->fdt = NULL;
}

static uint32_t be32_at(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * Walk the structure block's tags before libfdt does: every node name ends
 * inside it and every property's value fits in it. libfdt 1.6's
 * fdt_next_tag() adds a property's length to the offset in an int: length
 * 0xfffffff4 brings it back to the property's own tag, and fdt_check_full()
 * then loops there forever (found by tests/fuzz/fuzz_state: a stream's or
 * a snapshot's state or machine record could hang the process reading it).
 * The header's blocks are known to lie inside the blob, which is at most
 * STATE_MAX_SIZE: no offset here can wrap.
 */
static int check_struct_block(const void *fdt)
{
	const uint8_t *base = (const uint8_t *)fdt + fdt_off_dt_struct(fdt);
	uint32_t size = fdt_size_dt_struct(fdt), off = 0;

	while (size - off >= 4) {
		uint32_t tag = be32_at(base + off), len;
		const uint8_t *nul;

		off += 4;
		switch (tag) {
		case FDT_BEGIN_NODE:
			nul = memchr(base + off, 0, size - off);
			if (!nul)
				return -1;
			off = (uint32_t)(nul - base) + 1;
			break;
		case FDT_PROP:
			if (size - off < 8)
				return -1;
			len = be32_at(base + off);
			if (len > size - off - 8)
				return -1;
			off += 8 + len;
			break;
		case FDT_END_NODE:
		case FDT_NOP:
			break;
		case FDT_END:
			return 0;
		default:
			return -1;
		}
		off = (off + 3) & ~3U;          /* tags are 4-byte aligned */
		if (off > size)
			return -1;
	}
	return -1;
}

int state_reader_open(struct state_reader *r, const void *blob, size_t len)
{
	int err;

	memset(r, 0, sizeof(*r));
	if (len < sizeof(struct fdt_header) || len > STATE_MAX_SIZE) {
		pr_err("device state is corrupt (%s)", len < sizeof(struct fdt_header) ?
		       "too short" : "too large");
		return -1;
	}
	/* Only the version we write (17): libfdt 1.6's full check dereferences
	 * NULL on some older-version headers (found by tests/fuzz/fuzz_machine). */
	if (fdt_magic(blob) != FDT_MAGIC || fdt_version(blob) != 17 ||
	    fdt_last_comp_version(blob) > 17) {
		pr_err("device state is corrupt (not a version 17 flattened device tree)");
		return -1;
	}
	if (fdt_totalsize(blob) > len) {
		pr_err("device state is corrupt (%s)", fdt_strerror(-FDT_ERR_TRUNCATED));
		return -1;
	}
	if ((err = fdt_check_header(blob)) == 0 && check_struct_block(blob) < 0) {
		pr_err("device state is corrupt (a node name or property runs past the structure block)");
		return -1;
	}
	if (err || (err = fdt_check_full(blob, len)) != 0) {
		pr_err("device state is corrupt (%s)", fdt_strerror(err));
		return -1;
	}
	r->fdt = blob;
	r->node = 0;
	snprintf(r->path, sizeof(r->path), "/");
	return 0;
}

static void child_init(const struct state_reader *parent, struct state_reader *c, int node)
{
	const char *name = fdt_get_name(parent->fdt, node, NULL);
	const fdt32_t *v = fdt_getprop(parent->fdt, node, "version", NULL);
	char shown[STATE_NAME_SHOWN + 1];
	int len = 0;

	c->fdt = parent->fdt;
	c->node = node;
	c->version = 0;
	if (v && (fdt_getprop(parent->fdt, node, "version", &len), len == 4))
		c->version = fdt32_to_cpu(*v);
	/* Truncating a long path in a message is fine; the name is the blob's,
	 * hence escaped (every message about the node prints the path). */
	if (snprintf(c->path, sizeof(c->path), "%.60s%s%s", parent->path, parent->node ? "/" : "",
		     log_escape(shown, sizeof(shown), name ? name : "?")) < 0)
		c->path[0] = 0;
}

int state_node_open(const struct state_reader *parent, const char *name,
		    struct state_reader *child)
{
	int node = fdt_subnode_offset(parent->fdt, parent->node, name);

	if (node < 0) {
		pr_err("device state: %s%s%s is missing", parent->path,
		       parent->node ? "/" : "", name);
		return -1;
	}
	child_init(parent, child, node);
	return 0;
}

bool state_node_exists(const struct state_reader *parent, const char *name)
{
	return fdt_subnode_offset(parent->fdt, parent->node, name) >= 0;
}

int state_check_version(const struct state_reader *r, uint32_t max)
{
	if (r->version == 0 || r->version > max) {
		pr_err("device state: %s has version %u, this minivmm reads up to %u",
		       r->path, r->version, max);
		return -1;
	}
	return 0;
}

bool state_has_prop(const struct state_reader *r, const char *prop)
{
	int len;

	return fdt_getprop(r->fdt, r->node, prop, &len) != NULL;
}

static const void *getprop(const struct state_reader *r, const char *prop, int *len)
{
	const void *p = fdt_getprop(r->fdt, r->node, prop, len);

	if (!p)
		pr_err("device state: %s has no property '%s'", r->path, prop);
	return p;
}

static int bad_size(const struct state_reader *r, const char *prop, int len, size_t want)
{
	char shown[STATE_NAME_SHOWN + 1];

	/* The name may be the blob's (state_prop_u64). */
	pr_err("device state: %s/%s has %d bytes, expected %zu", r->path,
	       log_escape(shown, sizeof(shown), prop), len, want);
	return -1;
}

int state_get_u32(const struct state_reader *r, const char *prop, uint32_t *v)
{
	int len;
	const fdt32_t *p = getprop(r, prop, &len);

	if (!p)
		return -1;
	if (len != 4)
		return bad_size(r, prop, len, 4);
	*v = fdt32_to_cpu(*p);
	return 0;
}

int state_get_u64(const struct state_reader *r, const char *prop, uint64_t *v)
{
	int len;
	const void *p = getprop(r, prop, &len);
	fdt64_t be;

	if (!p)
		return -1;
	if (len != 8)
		return bad_size(r, prop, len, 8);
	memcpy(&be, p, 8);      /* properties are only 4-byte aligned */
	*v = fdt64_to_cpu(be);
	return 0;
}

int state_get_bytes(const struct state_reader *r, const char *prop, void *out, size_t want)
{
	int len;
	const void *p = getprop(r, prop, &len);

	if (!p)
		return -1;
	if ((size_t)len != want)
		return bad_size(r, prop, len, want);
	memcpy(out, p, want);
	return 0;
}

int state_get_var(const struct state_reader *r, const char *prop, const void **out, size_t *len,
		  size_t max)
{
	int l;
	const void *p = getprop(r, prop, &l);

	if (!p)
		return -1;
	if ((size_t)l > max) {
		pr_err("device state: %s/%s has %d bytes, at most %zu allowed", r->path, prop, l, max);
		return -1;
	}
	*out = p;
	*len = (size_t)l;
	return 0;
}

int state_get_str(const struct state_reader *r, const char *prop, const char **s, size_t max)
{
	const void *p;
	size_t len;

	if (state_get_var(r, prop, &p, &len, max) < 0)
		return -1;
	if (!len || ((const char *)p)[len - 1] || strlen(p) != len - 1) {
		pr_err("device state: %s/%s is not a string", r->path, prop);
		return -1;
	}
	*s = p;
	return 0;
}

int state_first_child(const struct state_reader *parent, struct state_reader *child)
{
	int node = fdt_first_subnode(parent->fdt, parent->node);

	if (node < 0)
		return -1;
	child_init(parent, child, node);
	return 0;
}

int state_next_child(const struct state_reader *parent, struct state_reader *child)
{
	int node = fdt_next_subnode(child->fdt, child->node);

	if (node < 0)
		return -1;
	child_init(parent, child, node);
	return 0;
}

const char *state_node_name(const struct state_reader *r)
{
	const char *n = fdt_get_name(r->fdt, r->node, NULL);

	return n ? n : "?";
}

int state_first_prop(const struct state_reader *r)
{
	int off = fdt_first_property_offset(r->fdt, r->node);

	return off < 0 ? -1 : off;
}

int state_next_prop(const struct state_reader *r, int off)
{
	off = fdt_next_property_offset(r->fdt, off);
	return off < 0 ? -1 : off;
}

const char *state_prop_name(const struct state_reader *r, int off)
{
	const char *name = NULL;

	return fdt_getprop_by_offset(r->fdt, off, &name, NULL) ? name : NULL;
}

int state_prop_u64(const struct state_reader *r, int off, uint64_t *v)
{
	const char *name = NULL;
	int len;
	const void *p = fdt_getprop_by_offset(r->fdt, off, &name, &len);
	fdt64_t be;

	if (!p || !name) {
		pr_err("device state: %s has a malformed property", r->path);
		return -1;
	}
	if (len != 8)
		return bad_size(r, name, len, 8);
	memcpy(&be, p, 8);
	*v = fdt64_to_cpu(be);
	return 0;
}
