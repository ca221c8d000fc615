// SPDX-License-Identifier: MIT
/*
 * Save order: with the guest running and dirty logging on, the whole RAM
 * area (fixed offsets, holes for zero pages), then rounds rewriting what
 * the guest dirtied in place (a page that became zero gets its hole back);
 * then pause and quiesce, the last dirty pages, fresh CRCs for the chunks
 * that changed, the records after the RAM area, and the header last, at
 * offset 0, pointing at them. Only a file whose header was written and
 * that was renamed into place is a snapshot.
 *
 * The pages the guest wrote while it was being saved, and those it faulted
 * on after a lazy restore (if it was restored so), are its working set:
 * they go into a working-set record, and a restore with --lazy=ws brings
 * them in before the guest runs (lazy_uffd.c).
 */#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migration/crc32c.h"
#include "migration/dirty.h"
#include "migration/machine.h"
#include "migration/migration.h"
#include "migration/ram_file.h"
#include "migration/snapshot.h"
#include "migration/vmstate.h"
#include "vmm/failpoint.h"
#include "vmm/log.h"

#define HEADER_SPACE 4096
#define WS_CHUNK_WORDS (RAM_CHUNK / 4096 / 64)     /* bitmap words per 2 MiB */

static int fsync_dir_of(const char *path)
{
	char copy[PATH_MAX];
	int fd, ret;

	snprintf(copy, sizeof(copy), "%s", path);
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ret = fsync(fd);
	close(fd);
	return ret;
}

/* Records after the RAM area; returns the bytes written there. */
static int write_meta(struct migration *m, int fd, uint64_t off, const uint32_t *crcs,
		      uint64_t nchunks, const struct ram_stats *rs, const struct page_set *ws,
		      uint64_t *len)
{
	struct vm *vm = m->vm;
	struct chan c;
	void *machine = NULL, *state = NULL;
	size_t mlen, slen;
	struct stream_end end = { .pages_present = rs->pages_present,
				  .pages_zero = rs->pages_zero, .ram_size = vm->mem.ram_size };
	uint32_t chunk = (uint32_t)RAM_CHUNK;
	struct iovec idx[2] = { { &chunk, 4 }, { (void *)crcs, nchunks * 4 } };
	int ret = -1;

	chan_init(&c, fd, true, off, m->uri);
	c.records = 1;          /* the header, written last, counts too */
	if (machine_save(vm, &machine, &mlen) < 0 || vmstate_save(vm, &state, &slen) < 0)
		goto out;
	if (record_write(&c, REC_MACHINE, 0, machine, mlen) < 0 ||
	    record_writev(&c, REC_RAM_INDEX, 0, idx, 2) < 0 ||
	    (ws && ws->count && record_write(&c, REC_WORKING_SET, 0, ws, sizeof(*ws) +
					     (ws->pages + 63) / 64 * 8) < 0) ||
	    record_write(&c, REC_STATE, 0, state, slen) < 0)
		goto out;
	end.records = c.records;
	if (record_write(&c, REC_END, 0, &end, sizeof(end)) < 0)
		goto out;
	*len = c.off - off;
	ret = 0;
out:
	free(machine);
	free(state);
	return ret;
}

static int write_header(int fd, const char *name, uint64_t ram_len, uint64_t meta_off,
			uint64_t meta_len)
{
	struct stream_header h;
	struct chan c;

	stream_header_init(&h, FLAG_FILE_LAYOUT);
	h.ram_offset = RAM_FILE_OFFSET;
	h.ram_length = ram_len;
	h.meta_offset = meta_off;
	h.meta_length = meta_len;
	chan_init(&c, fd, true, 0, name);
	return record_write(&c, REC_HEADER, 0, &h, sizeof(h));
}

static void stats_update(struct migration *m, const struct ram_stats *rs, uint64_t bytes)
{
	pthread_mutex_lock(&m->stats_lock);
	m->stats.pages_normal = rs->pages_present;
	m->stats.pages_zero = rs->pages_zero;
	m->stats.transferred = bytes;
	m->stats.ram_remaining = 0;
	pthread_mutex_unlock(&m->stats_lock);
}

/*
 * RAM goes out with O_DIRECT where the filesystem allows it: guest pages
 * are page-aligned already, and skipping the page cache saves a copy and
 * makes the final sync short. Elsewhere (tmpfs) the buffered fd serves.
 */
static int direct_fd(const char *tmp, int fd)
{
	int dfd = open(tmp, O_WRONLY | O_DIRECT | O_CLOEXEC);

	return dfd >= 0 ? dfd : dup(fd);
}

#define LIVE_MAX_ROUNDS   8
#define LIVE_SMALL_ENOUGH (16ULL << 20)        /* final pass this small: stop */

struct live_save {
	struct migration *m;
	int fd, ram_fd;
	uint64_t nchunks;
	uint32_t *crcs;
	uint64_t *chunk_dirty;
	uint64_t *bits[GUEST_MEM_MAX_REGIONS];
	uint64_t *hot[GUEST_MEM_MAX_REGIONS];   /* written while saving: the working set */
	struct ram_stats rs;
};

/* Harvest into bits; with `hot`, remember them in the working set too. */
static uint64_t take_dirty(struct live_save *ls, bool hot)
{
	struct vm *vm = ls->m->vm;
	uint64_t n = 0;

	if (dirty_harvest(vm) < 0)
		return UINT64_MAX;
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		n += dirty_take(vm, i, ls->bits[i]);
		for (uint64_t w = 0; hot && w < (vm->mem.regions[i].size / 4096 + 63) / 64; w++)
			ls->hot[i][w] |= ls->bits[i][w];
	}
	return n;
}

/* The working-set record's payload (malloc'd), or NULL if none. */
static struct page_set *working_set(struct live_save *ls)
{
	const struct guest_mem *mem = &ls->m->vm->mem;
	uint64_t pages = mem->ram_size / 4096;
	struct page_set *ws = calloc(1, sizeof(*ws) + (pages + 63) / 64 * 8);

	if (!ws)
		return NULL;
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		uint64_t nw = (mem->regions[i].size / 4096 + 63) / 64;

		/* Whole 2 MiB chunks: a guest that touched some of one mostly
		 * touched the rest, which the lazy push may have reached first. */
		for (uint64_t w = 0; w < nw; w += WS_CHUNK_WORDS) {
			uint64_t any = 0, end = w + WS_CHUNK_WORDS < nw ? w + WS_CHUNK_WORDS : nw;

			for (uint64_t k = w; k < end; k++)
				any |= ls->hot[i][k];
			for (uint64_t k = w; any && k < end; k++)
				ls->hot[i][k] = ~0ULL;
		}
		if (nw && (mem->regions[i].size / 4096) % 64)
			ls->hot[i][nw - 1] &= (1ULL << ((mem->regions[i].size / 4096) % 64)) - 1;
	}
	ws->pages = pages;
	ws->count = ram_bits_to_map(mem, ls->hot, (uint64_t *)(ws + 1));
	return ws;
}

/*
 * Guest running: the whole RAM once, then rounds of what it dirtied,
 * rewritten in place at the same fixed offsets, until the rest is small.
 */
static int save_running(struct live_save *ls)
{
	struct vm *vm = ls->m->vm;

	/* Tests: hold here until cancelled, so "one at a time" and cancel can
	 * be checked without racing a fast save. */
	while (failpoint("src-save-stall") && !migration_cancelled(ls->m))
		usleep(10000);
	if (migration_cancelled(ls->m))
		return -1;

	if (dirty_log_start(vm) < 0 || take_dirty(ls, false) == UINT64_MAX)
		return -1;
	for (unsigned i = 0; i < vm->mem.nr_regions; i++)       /* logged before the start */
		memset(ls->bits[i], 0, (vm->mem.regions[i].size / 4096 + 63) / 64 * 8);
	migration_set_status(ls->m, MIG_ACTIVE);
	if (ram_file_write(ls->ram_fd, RAM_FILE_OFFSET, &vm->mem, ls->crcs, &ls->rs) < 0)
		return -1;
	for (unsigned round = 0; round < LIVE_MAX_ROUNDS; round++) {
		uint64_t n = take_dirty(ls, true);

		if (n == UINT64_MAX || migration_cancelled(ls->m))
			return -1;
		pthread_mutex_lock(&ls->m->stats_lock);
		ls->m->stats.rounds++;
		ls->m->stats.pages_dirty_resent += n;
		pthread_mutex_unlock(&ls->m->stats_lock);
		if (n * 4096 <= LIVE_SMALL_ENOUGH)
			break;  /* the bits stay set: the frozen pass writes them */
		if (ram_file_write_dirty(ls->ram_fd, RAM_FILE_OFFSET, &vm->mem, ls->bits,
					 ls->chunk_dirty, &ls->rs) < 0)
			return -1;
	}
	return 0;
}

/* Guest frozen: the last dirty pages, fresh CRCs, records, header, sync. */
static int save_frozen(struct live_save *ls)
{
	struct migration *m = ls->m;
	struct vm *vm = m->vm;
	uint64_t ram_len = ls->nchunks * RAM_CHUNK, meta_off = RAM_FILE_OFFSET + ram_len, meta_len;
	struct page_set *ws = NULL;
	int ret = -1;

	if (take_dirty(ls, true) == UINT64_MAX ||
	    ram_file_write_dirty(ls->ram_fd, RAM_FILE_OFFSET, &vm->mem, ls->bits, ls->chunk_dirty,
				 &ls->rs) < 0)
		return -1;
	ram_file_update_crcs(&vm->mem, ls->chunk_dirty, ls->crcs);
	/* What the file holds now, as a reader will count it. */
	ls->rs.pages_present = ram_file_pages_present(ls->fd, RAM_FILE_OFFSET, ram_len);
	ls->rs.pages_zero = vm->mem.ram_size / 4096 - ls->rs.pages_present;
	ws = working_set(ls);
	ret = migration_cancelled(m) ||
	      write_meta(m, ls->fd, meta_off, ls->crcs, ls->nchunks, &ls->rs, ws, &meta_len) < 0 ||
	      write_header(ls->fd, m->uri, ram_len, meta_off, meta_len) < 0 ? -1 : 0;
	free(ws);
	if (ret < 0)
		return -1;
	if (fdatasync(ls->fd) < 0) {
		pr_err("%s: sync failed: %s", m->uri, strerror(errno));
		return -1;
	}
	/* The disks the snapshot names hold what the guest wrote before it. */
	if (vm_flush_backends(vm) < 0)
		return -1;
	stats_update(m, &ls->rs, meta_off + meta_len);
	/* The same digest query-ram-digest gives: tests compare the two. */
	m->ram_digest = crc32c(0, ls->crcs, ls->nchunks * 4);
	m->has_digest = true;
	return 0;
}

static int live_save_init(struct live_save *ls, struct migration *m, int fd, int ram_fd)
{
	struct vm *vm = m->vm;

	memset(ls, 0, sizeof(*ls));
	ls->m = m;
	/* What the guest touched after a lazy restore, before our own reads. */
	atomic_store(&vm->mem.touched_off, true);
	ls->fd = fd;
	ls->ram_fd = ram_fd;
	ls->nchunks = ram_nr_chunks(&vm->mem);
	ls->crcs = calloc(ls->nchunks, sizeof(uint32_t));
	ls->chunk_dirty = calloc(ls->nchunks / 64 + 1, sizeof(uint64_t));
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		ls->bits[i] = calloc((vm->mem.regions[i].size / 4096 + 63) / 64, sizeof(uint64_t));
		ls->hot[i] = calloc((vm->mem.regions[i].size / 4096 + 63) / 64, sizeof(uint64_t));
		if (!ls->bits[i] || !ls->hot[i])
			return -1;
		for (uint64_t w = 0; vm->mem.regions[i].touched &&
		     w < (vm->mem.regions[i].size / 4096 + 63) / 64; w++)
			ls->hot[i][w] = atomic_load(&vm->mem.regions[i].touched[w]);
	}
	return ls->crcs && ls->chunk_dirty ? 0 : -1;
}

static void live_save_free(struct live_save *ls)
{
	free(ls->crcs);
	free(ls->chunk_dirty);
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
		free(ls->bits[i]);
		free(ls->hot[i]);
	}
}

int snapshot_save(struct migration *m, const char *path)
{
	char tmp[PATH_MAX];
	struct live_save ls = { 0 };
	uint64_t t0;
	bool frozen = false, ok = false;
	int fd, ram_fd, ret = -1;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp-%d", path, (int)getpid()) >= (int)sizeof(tmp)) {
		pr_err("snapshot path too long");
		return -1;
	}
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		pr_err("cannot create %s: %s", tmp, strerror(errno));
		return -1;
	}
	ram_fd = direct_fd(tmp, fd);
	m->stats.setup_time_ms = (now_ns() - m->start_ns) / 1000000;
	t0 = 0;
	if (ram_fd >= 0 && live_save_init(&ls, m, fd, ram_fd) == 0 && save_running(&ls) == 0) {
		migration_set_status(m, MIG_DEVICE);
		t0 = now_ns();
		vmstate_freeze(m->vm);
		frozen = true;
		ok = save_frozen(&ls) == 0 && !migration_cancelled(m);
	}
	live_save_free(&ls);
	dirty_log_stop(m->vm);
	if (ok) {
		if (rename(tmp, path) == 0) {
			fsync_dir_of(path);
			ret = 0;
		} else {
			pr_err("cannot rename %s to %s: %s", tmp, path, strerror(errno));
		}
	}
	if (ret < 0) {
		unlink(tmp);
		if (migration_cancelled(m))
			pr_err("snapshot cancelled");
	}
	close(fd);
	if (ram_fd >= 0)
		close(ram_fd);
	pthread_mutex_lock(&m->stats_lock);
	m->stats.downtime_ms = t0 ? (now_ns() - t0) / 1000000 : 0;
	pthread_mutex_unlock(&m->stats_lock);
	/* A checkpoint or a failure: the guest goes on. A move keeps it frozen
	 * until the main thread stops the VM. */
	if (frozen && (ret < 0 || m->after == MIG_AFTER_RUN))
		vmstate_thaw(m->vm);
	return ret;
}
