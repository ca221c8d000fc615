/* SPDX-License-Identifier: MIT */
/*
 * Self-describing, versioned device/vCPU/VM state: a flattened device tree
 * built and read with libfdt. Each saved object is a node with a `version`
 * property and named properties for its fields (big-endian, as FDT cells),
 * so a reader can list what is there, skip what it does not know, refuse
 * what it cannot accept with a message naming the node and both versions,
 * and `dtc -I dtb -O dts` shows it to a human.
 *
 * Writer: nodes nest; any error sticks in w->err and every later call is a
 * no-op, so save functions need not check each put. Reader: every getter
 * checks the property's presence and exact size; a missing or misshapen
 * property is an error that names the node and property.
 */
#ifndef MIGRATION_STATE_H
#define MIGRATION_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STATE_MAX_SIZE (64U << 20)      /* bound on a state blob we accept */

struct state_writer {
	void *fdt;
	size_t cap;
	int err;                /* first libfdt/alloc error, 0 if none */
	int depth;
};

/* Bytes of a node name, once escaped, that messages and --inspect show. */
#define STATE_NAME_SHOWN 60

struct state_reader {
	const void *fdt;
	int node;               /* offset of the current node */
	char path[128];         /* for error messages: the names escaped (log_escape) */
	uint32_t version;       /* of this node */
};

int state_writer_init(struct state_writer *w);
void state_node_begin(struct state_writer *w, const char *name, uint32_t version);
void state_node_end(struct state_writer *w);
void state_put_u32(struct state_writer *w, const char *prop, uint32_t v);
void state_put_u64(struct state_writer *w, const char *prop, uint64_t v);
void state_put_bytes(struct state_writer *w, const char *prop, const void *p, size_t len);
void state_put_str(struct state_writer *w, const char *prop, const char *s);
/* Finish and hand over the blob (malloc'd); -1 if anything failed. */
int state_writer_finish(struct state_writer *w, void **blob, size_t *len);
void state_writer_free(struct state_writer *w);

/* Validate `blob` fully (structure, bounds) and open its root. */
int state_reader_open(struct state_reader *r, const void *blob, size_t len);
/* Child `name` of `parent`, with its version; -1 (message) if absent. */
int state_node_open(const struct state_reader *parent, const char *name,
		    struct state_reader *child);
bool state_node_exists(const struct state_reader *parent, const char *name);
/* Refuse a node whose version is newer than `max` (message names both). */
int state_check_version(const struct state_reader *r, uint32_t max);
/* An optional property (added by a later minor version) is there. */
bool state_has_prop(const struct state_reader *r, const char *prop);
int state_get_u32(const struct state_reader *r, const char *prop, uint32_t *v);
int state_get_u64(const struct state_reader *r, const char *prop, uint64_t *v);
/* Exactly `len` bytes. */
int state_get_bytes(const struct state_reader *r, const char *prop, void *p, size_t len);
/* Up to `max` bytes; the size found goes to *len. */
int state_get_var(const struct state_reader *r, const char *prop, const void **p, size_t *len,
		  size_t max);
/* NUL-terminated string of at most `max` bytes including the NUL; its other
 * bytes may be anything: escape it (log_escape) before printing it. */
int state_get_str(const struct state_reader *r, const char *prop, const char **s, size_t max);

/* Iterate child nodes: returns the first/next child or -1 at the end. */
int state_first_child(const struct state_reader *parent, struct state_reader *child);
int state_next_child(const struct state_reader *parent, struct state_reader *child);
/* The name as the blob has it: any bytes, to escape before printing. */
const char *state_node_name(const struct state_reader *r);
/* Iterate a node's properties: an offset >= 0, or -1 at the end. */
int state_first_prop(const struct state_reader *r);
int state_next_prop(const struct state_reader *r, int off);
const char *state_prop_name(const struct state_reader *r, int off);
/* The property at `off` as a u64 (exactly 8 bytes): no lookup by name, so
 * a walk over a node's properties stays linear however many it has. */
int state_prop_u64(const struct state_reader *r, int off, uint64_t *v);

#endif
