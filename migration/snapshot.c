// SPDX-License-Identifier: MIT
/*
 * Save order: pause and quiesce, write the RAM area (fixed offsets, holes
 * for zero pages), then machine description, RAM index, state and end
 * records after it, and the header last, at offset 0, pointing at them.
 * Only a file whose header was written and that was renamed into place is
 * a snapshot.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migration/crc32c.h"
#include "migration/machine.h"
#include "migration/migration.h"
#include "migration/ram_file.h"
#include "migration/snapshot.h"
#include "migration/vmstate.h"
#include "vmm/log.h"

#define HEADER_SPACE 4096

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
		      uint64_t nchunks, const struct ram_stats *rs, uint64_t *len)
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

/* With the VM frozen: RAM, records, header, sync. */
static int save_frozen(struct migration *m, int fd, int ram_fd)
{
	struct vm *vm = m->vm;
	uint64_t nchunks = ram_nr_chunks(&vm->mem);
	uint64_t ram_len = nchunks * RAM_CHUNK, meta_off = RAM_FILE_OFFSET + ram_len, meta_len;
	uint32_t *crcs = calloc(nchunks, sizeof(uint32_t));
	struct ram_stats rs;
	int ret = -1;

	if (!crcs)
		return -1;
	if (ram_file_write(ram_fd, RAM_FILE_OFFSET, &vm->mem, crcs, &rs) < 0 || migration_cancelled(m) ||
	    write_meta(m, fd, meta_off, crcs, nchunks, &rs, &meta_len) < 0 ||
	    write_header(fd, m->uri, ram_len, meta_off, meta_len) < 0)
		goto out;
	if (fdatasync(fd) < 0) {
		pr_err("%s: sync failed: %s", m->uri, strerror(errno));
		goto out;
	}
	stats_update(m, &rs, meta_off + meta_len);
	/* The same digest query-ram-digest gives: tests compare the two. */
	m->ram_digest = crc32c(0, crcs, nchunks * 4);
	m->has_digest = true;
	ret = 0;
out:
	free(crcs);
	return ret;
}

int snapshot_save(struct migration *m, const char *path)
{
	char tmp[PATH_MAX];
	uint64_t t0;
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
	migration_set_status(m, MIG_DEVICE);
	t0 = now_ns();
	vmstate_freeze(m->vm);
	m->stats.setup_time_ms = (now_ns() - t0) / 1000000;
	if (ram_fd >= 0 && save_frozen(m, fd, ram_fd) == 0 && !migration_cancelled(m)) {
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
	m->stats.downtime_ms = (now_ns() - t0) / 1000000;
	pthread_mutex_unlock(&m->stats_lock);
	/* A checkpoint or a failure: the guest goes on. A move keeps it frozen
	 * until the main thread stops the VM. */
	if (ret < 0 || m->checkpoint)
		vmstate_thaw(m->vm);
	return ret;
}
