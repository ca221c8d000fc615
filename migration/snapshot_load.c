// SPDX-License-Identifier: MIT
/*
 * Reading a snapshot file: everything is validated before the VM is built
 * — header, then every record after the RAM area, the index's size against
 * the machine's RAM, the end record's totals — so a bad file is refused
 * with one message and no half-built guest.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migration/machine.h"
#include "migration/ram_file.h"
#include "migration/snapshot.h"
#include "migration/vmstate.h"
#include "vmm/log.h"

static int read_header(struct snapshot *s, uint64_t file_size)
{
	struct record rec;
	int ret;

	char magic[8];

	chan_init(&s->chan, s->fd, true, 0, s->path);
	/* The first bytes decide whether this is ours at all. */
	if (file_size < sizeof(struct record_hdr) + sizeof(s->hdr) + 4 ||
	    pread(s->fd, magic, 8, sizeof(struct record_hdr)) != 8 ||
	    memcmp(magic, STREAM_MAGIC, 8)) {
		pr_err("%s: not a minivmm snapshot (%s)", s->path,
		       file_size < sizeof(struct record_hdr) + sizeof(s->hdr) + 4 ? "too short" : "bad magic");
		return -1;
	}
	if (record_read(&s->chan, &rec, REC_HEADER) < 0)
		return -1;
	ret = stream_header_check(&rec, &s->hdr);
	record_free(&rec);
	if (ret < 0)
		return -1;
	/* The RAM area ends before the records start, computed without
	 * wrapping: a RAM area whose end passes 2^64 is no layout either. */
	if (!(s->hdr.flags & FLAG_FILE_LAYOUT) || s->hdr.ram_offset % 4096 ||
	    s->hdr.ram_length > s->hdr.meta_offset ||
	    s->hdr.ram_offset > s->hdr.meta_offset - s->hdr.ram_length ||
	    s->hdr.meta_offset > file_size || s->hdr.meta_length > file_size - s->hdr.meta_offset) {
		pr_err("%s: snapshot layout is inconsistent (file truncated or corrupt)", s->path);
		return -1;
	}
	return 0;
}

static int read_records(struct snapshot *s)
{
	s->chan.off = s->hdr.meta_offset;
	s->chan.records = 1;
	if (record_read(&s->chan, &s->machine, REC_MACHINE) < 0 ||
	    record_read(&s->chan, &s->ram_index, REC_RAM_INDEX) < 0 ||
	    record_read(&s->chan, &s->state, 0) < 0)
		return -1;
	/* The working set (since 1.2) is optional, before the state. */
	if (s->state.type == REC_WORKING_SET) {
		s->working_set = s->state;
		memset(&s->state, 0, sizeof(s->state));
		if (record_read(&s->chan, &s->state, REC_STATE) < 0)
			return -1;
	} else if (s->state.type != REC_STATE) {
		pr_err("%s: a %s record where the state belongs", s->path,
		       record_type_name(s->state.type));
		return -1;
	}
	if (record_read(&s->chan, &s->end, REC_END) < 0)
		return -1;
	/* Exactly its size: a shorter one (its CRC may well be right) would
	 * have us read past its payload. */
	if (s->end.length != sizeof(s->totals)) {
		pr_err("%s: the end record has %llu bytes, expected %zu", s->path, (unsigned long long)s->end.length,
		       sizeof(s->totals));
		return -1;
	}
	memcpy(&s->totals, s->end.payload, sizeof(s->totals));
	if (s->totals.records != s->chan.records - 1) {
		pr_err("%s: end record counts %llu records, found %llu", s->path,
		       (unsigned long long)s->totals.records, (unsigned long long)(s->chan.records - 1));
		return -1;
	}
	if (s->ram_index.length < 4 || (s->ram_index.length - 4) / 4 * RAM_CHUNK != s->hdr.ram_length ||
	    (s->ram_index.length - 4) % 4) {
		pr_err("%s: RAM index does not match the RAM area", s->path);
		return -1;
	}
	return 0;
}

int snapshot_open(struct snapshot *s, const char *path)
{
	struct stat st;

	memset(s, 0, sizeof(*s));
	snprintf(s->path, sizeof(s->path), "%s", path);
	s->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (s->fd < 0) {
		pr_err("%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(s->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		pr_err("%s: not a regular file", path);
		return -1;
	}
	if (read_header(s, (uint64_t)st.st_size) < 0 || read_records(s) < 0)
		return -1;
	return 0;
}

void snapshot_close(struct snapshot *s)
{
	record_free(&s->machine);
	record_free(&s->ram_index);
	record_free(&s->state);
	record_free(&s->end);
	record_free(&s->working_set);
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

int snapshot_check_ram(const struct snapshot *s, const struct vm *vm)
{
	if (ram_nr_chunks(&vm->mem) * RAM_CHUNK != s->hdr.ram_length || s->totals.ram_size != vm->mem.ram_size) {
		pr_err("%s: RAM area does not match the machine description", s->path);
		return -1;
	}
	return 0;
}

int snapshot_load_ram(struct snapshot *s, struct vm *vm, bool lazy)
{
	const uint32_t *crcs = (const uint32_t *)((const uint8_t *)s->ram_index.payload + 4);
	struct ram_stats rs;

	if (snapshot_check_ram(s, vm) < 0)
		return -1;
	if (lazy)
		return ram_file_map(s->fd, s->hdr.ram_offset, &vm->mem);
	if (ram_file_read(s->fd, s->hdr.ram_offset, &vm->mem, crcs, &rs) < 0)
		return -1;
	/* The save counted its file's data extents; a copy may have more (zero
	 * pages as data) or, on another filesystem, fewer: either count will do,
	 * the chunk CRCs above vouch for the content. */
	if (rs.pages_present != s->totals.pages_present && rs.pages_extent != s->totals.pages_present) {
		pr_err("%s: %llu RAM pages present, the end record says %llu", s->path,
		       (unsigned long long)rs.pages_present, (unsigned long long)s->totals.pages_present);
		return -1;
	}
	return 0;
}

const uint64_t *snapshot_working_set(const struct snapshot *s, const struct vm *vm,
				     uint64_t *count)
{
	uint64_t pages = vm->mem.ram_size / 4096, words = (pages + 63) / 64, set = 0;
	const uint64_t *map;
	struct page_set ps;

	if (!s->working_set.payload)
		return NULL;
	if (s->working_set.length != sizeof(ps) + words * 8) {
		pr_warn("%s: the working set does not fit this machine's RAM: not used", s->path);
		return NULL;
	}
	memcpy(&ps, s->working_set.payload, sizeof(ps));
	map = (const uint64_t *)((const uint8_t *)s->working_set.payload + sizeof(ps));
	for (uint64_t w = 0; w < words; w++)
		set += (uint64_t)__builtin_popcountll(map[w]);
	if (ps.pages != pages || ps.count != set || (pages % 64 && map[words - 1] >> (pages % 64))) {
		pr_warn("%s: the working set does not fit this machine's RAM: not used", s->path);
		return NULL;
	}
	*count = set;
	return map;
}

int snapshot_inspect(const char *path)
{
	struct snapshot s;
	uint64_t present;
	char shown[ESCAPED_SIZE(sizeof(s.path))];
	int ret = -1;

	if (snapshot_open(&s, path) < 0)
		goto out;
	present = ram_file_pages_present(s.fd, s.hdr.ram_offset, s.hdr.ram_length);
	/* Escaped like every string from the file (machine_print): a file's
	 * name may come from whoever made the file, too. */
	printf("file: %s\n", log_escape(shown, sizeof(shown), s.path));
	printf("format: minivmm stream %u.%u, fixed-offset file layout\n", s.hdr.major, s.hdr.minor);
	if (machine_print(s.machine.payload, s.machine.length) < 0)
		goto out;
	printf("ram: %llu MiB in %llu chunks of 2 MiB at offset %llu; %llu pages present, %llu zero (holes)\n",
	       (unsigned long long)(s.totals.ram_size >> 20),
	       (unsigned long long)(s.ram_index.length - 4) / 4, (unsigned long long)s.hdr.ram_offset,
	       (unsigned long long)s.totals.pages_present, (unsigned long long)s.totals.pages_zero);
	if (present < s.totals.pages_present)
		printf("warning: only %llu pages have data in the file\n", (unsigned long long)present);
	if (s.working_set.payload && s.working_set.length >= sizeof(struct page_set)) {
		struct page_set ps;

		memcpy(&ps, s.working_set.payload, sizeof(ps));
		printf("working set: %llu pages (%llu MiB) written while it was saved\n",
		       (unsigned long long)ps.count, (unsigned long long)(ps.count * 4096 >> 20));
	}
	printf("state: %llu bytes\n", (unsigned long long)s.state.length);
	if (vmstate_print(s.state.payload, s.state.length) < 0)
		goto out;
	ret = 0;
out:
	snapshot_close(&s);
	return ret;
}
