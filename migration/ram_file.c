// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "migration/crc32c.h"
#include "migration/ram_file.h"
#include "vmm/log.h"

#define PAGE            GUEST_PAGE_SIZE
#define MAX_IO          (64ULL << 20)   /* bytes per read/write call */
#define READ_CHUNK      (1ULL << 20)    /* restore: file -> buffer (L2) -> memfd */

static const uint8_t zero_page[PAGE];

static uint32_t zero_page_crc(void)
{
	static uint32_t crc;

	/* Computed on the first call; the value never changes. */
	if (!crc)
		crc = crc32c(0, zero_page, PAGE);
	return crc;
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

uint64_t ram_region_offset(const struct guest_mem *mem, unsigned i)
{
	uint64_t off = 0;

	for (unsigned k = 0; k < i; k++)
		off += align_up(mem->regions[k].size, RAM_CHUNK);
	return off;
}

uint64_t ram_nr_chunks(const struct guest_mem *mem)
{
	return ram_region_offset(mem, mem->nr_regions) / RAM_CHUNK;
}

/* Chunk CRCs of one region from its page CRCs (holes already set). */
static void chunk_crcs(const uint32_t *page_crc, uint64_t pages, uint32_t *crcs)
{
	uint64_t per = RAM_CHUNK / PAGE;

	for (uint64_t c = 0; c * per < pages; c++) {
		uint64_t n = pages - c * per < per ? pages - c * per : per;

		crcs[c] = crc32c(0, page_crc + c * per, n * sizeof(uint32_t));
	}
}

static uint32_t *page_crc_alloc(uint64_t pages)
{
	uint32_t *p = malloc(pages * sizeof(uint32_t));

	if (!p) {
		pr_err("out of memory for RAM checksums");
		return NULL;
	}
	for (uint64_t i = 0; i < pages; i++)
		p[i] = zero_page_crc();
	return p;
}

static int write_run(int fd, const uint8_t *src, uint64_t len, uint64_t off, struct ram_stats *st)
{
	if (fd < 0)     /* checksums only (ram_compute_crcs) */
		return 0;
	while (len) {
		ssize_t n = pwrite(fd, src, len > MAX_IO ? MAX_IO : len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			pr_err("writing guest RAM: %s", n < 0 ? strerror(errno) : "short write");
			return -1;
		}
		src += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
		st->bytes_written += (uint64_t)n;
	}
	return 0;
}

/* One data extent [pos, end) of a region: write its non-zero pages in runs. */
/* page_crc[0] is the CRC slot of page `first` of the region. */
static int write_extent(int fd, uint64_t base, const struct mem_region *r, uint64_t pos,
			uint64_t end, uint32_t *page_crc, uint64_t first, struct ram_stats *st)
{
	uint64_t run = pos, p;

	for (p = pos; p < end; p += PAGE) {
		const uint8_t *page = r->hva + p;

		if (!guest_page_is_zero(page)) {
			page_crc[p / PAGE - first] = crc32c(0, page, PAGE);
			st->pages_present++;
			continue;
		}
		st->pages_zero++;
		if (p > run && write_run(fd, r->hva + run, p - run, base + run, st) < 0)
			return -1;
		run = p + PAGE;
	}
	if (p > run && write_run(fd, r->hva + run, p - run, base + run, st) < 0)
		return -1;
	return 0;
}

static int write_region(int fd, uint64_t base, const struct mem_region *r, uint32_t *crcs,
			struct ram_stats *st)
{
	uint64_t pages = r->size / PAGE, pos = 0;
	uint32_t *page_crc = page_crc_alloc(pages);
	int ret = -1;

	if (!page_crc)
		return -1;
	/* Mapped from a snapshot: the memfd knows nothing; look at every page. */
	if (r->file_backed) {
		ret = write_extent(fd, base, r, 0, r->size, page_crc, 0, st);
		pos = r->size;
		if (ret < 0)
			goto out;
	}
	while (pos < r->size) {
		off_t data = lseek(r->memfd, (off_t)pos, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			break;  /* nothing but holes from here */
		hole = data < 0 ? -1 : lseek(r->memfd, data, SEEK_HOLE);
		if (data < 0 || hole < 0) {
			pr_err("SEEK_DATA on guest RAM: %s", strerror(errno));
			goto out;
		}
		st->pages_zero += ((uint64_t)data - pos) / PAGE;
		if (write_extent(fd, base, r, (uint64_t)data, (uint64_t)hole, page_crc, 0, st) < 0)
			goto out;
		pos = (uint64_t)hole;
	}
	st->pages_zero += (r->size - pos) / PAGE;
	chunk_crcs(page_crc, pages, crcs);
	ret = 0;
out:
	free(page_crc);
	return ret;
}

int ram_file_write(int fd, uint64_t ram_offset, const struct guest_mem *mem, uint32_t *crcs,
		   struct ram_stats *st)
{
	memset(st, 0, sizeof(*st));
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		uint64_t off = ram_region_offset(mem, i);

		if (write_region(fd, ram_offset + off, &mem->regions[i], crcs + off / RAM_CHUNK, st) < 0)
			return -1;
	}
	return 0;
}

int ram_compute_crcs(const struct guest_mem *mem, uint32_t *crcs, struct ram_stats *st)
{
	return ram_file_write(-1, 0, mem, crcs, st);
}

static int read_extent(int fd, uint8_t *dst, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, dst, len > MAX_IO ? MAX_IO : len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			pr_err("reading guest RAM from the snapshot: %s",
			       n < 0 ? strerror(errno) : "file truncated");
			return -1;
		}
		dst += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

/*
 * Pages [d, h) of a region from the file at base + d. Through a buffer that
 * stays in L2: checksummed there, then written into the memfd with pwrite,
 * which allocates shmem pages far cheaper than faulting them in through
 * the mapping (no page-table work; KVM maps them when the guest touches).
 */
/* Copy the non-zero pages of buf[0, len) to the region at d, in runs:
 * guest RAM is a new, empty memfd. A copy of the file without its holes
 * (cp --sparse=never, most downloads) has zero pages as data; they stay
 * holes here and are not counted as present. */
static int load_nonzero(struct mem_region *r, uint64_t d, const uint8_t *buf, uint64_t len,
			uint64_t *present)
{
	uint64_t run = 0, p;

	for (p = 0; p < len; p += PAGE) {
		if (!guest_page_is_zero(buf + p)) {
			(*present)++;
			continue;
		}
		if (p > run && guest_mem_load(r, d + run, buf + run, p - run) < 0)
			return -1;
		run = p + PAGE;
	}
	if (p > run && guest_mem_load(r, d + run, buf + run, p - run) < 0)
		return -1;
	return 0;
}

static int read_pages(int fd, uint64_t base, struct mem_region *r, uint64_t d, uint64_t h,
		      uint32_t *page_crc, uint8_t *buf, uint64_t *present)
{
	while (d < h) {
		uint64_t len = h - d > READ_CHUNK ? READ_CHUNK : h - d;

		if (read_extent(fd, buf, len, base + d) < 0)
			return -1;
		for (uint64_t p = 0; page_crc && p < len; p += PAGE)
			page_crc[(d + p) / PAGE] = crc32c(0, buf + p, PAGE);
		if (load_nonzero(r, d, buf, len, present) < 0) {
			pr_err("writing restored guest RAM: %s", strerror(errno));
			return -1;
		}
		d += len;
	}
	return 0;
}

/* Read the extents of [start, end) of a region (offsets within it). */
static int read_range(int fd, uint64_t base, struct mem_region *r, uint64_t start, uint64_t end,
		      uint32_t *page_crc, uint64_t *present, uint64_t *extent, uint8_t *buf)
{
	uint64_t pos = start;

	while (pos < end) {
		off_t data = lseek(fd, (off_t)(base + pos), SEEK_DATA), hole;
		uint64_t d, h;

		if (data < 0 && errno == ENXIO)
			break;
		hole = data < 0 ? -1 : lseek(fd, data, SEEK_HOLE);
		if (data < 0 || hole < 0) {
			pr_err("SEEK_DATA on the snapshot: %s", strerror(errno));
			return -1;
		}
		if ((uint64_t)data >= base + end)
			break;
		/* Extents may start or end mid-page on odd filesystems: whole pages only. */
		d = ((uint64_t)data - base) & ~(PAGE - 1);
		h = align_up((uint64_t)hole - base, PAGE);
		if (h > end)
			h = end;
		/* The file may not be cached (saves use O_DIRECT): have the
		 * kernel read the extent ahead while we copy it chunk by chunk. */
		posix_fadvise(fd, (off_t)(base + d), (off_t)(h - d), POSIX_FADV_WILLNEED);
		if (read_pages(fd, base, r, d, h, page_crc, buf, present) < 0)
			return -1;
		*extent += (h - d) / PAGE;
		pos = h;
	}
	return 0;
}

static int read_region(int fd, uint64_t base, struct mem_region *r, uint32_t *page_crc,
		       struct ram_stats *st)
{
	uint8_t *buf = malloc(READ_CHUNK);
	int ret;

	if (!buf) {
		pr_err("out of memory for the restore buffer");
		return -1;
	}
	/* One thread: shmem page allocation bounds this, and it did not
	 * scale with a second thread on the 2-core hosts we measured. */
	ret = read_range(fd, base, r, 0, r->size, page_crc, &st->pages_present, &st->pages_extent,
			 buf);
	free(buf);
	return ret;
}

static int check_region(const uint32_t *page_crc, uint64_t pages, const uint32_t *want,
			uint64_t first_chunk)
{
	uint64_t per = RAM_CHUNK / PAGE;

	for (uint64_t c = 0; c * per < pages; c++) {
		uint64_t n = pages - c * per < per ? pages - c * per : per;
		uint32_t got = crc32c(0, page_crc + c * per, n * sizeof(uint32_t));

		if (got != want[c]) {
			pr_err("snapshot RAM is corrupt: chunk %llu (guest RAM at %llu MiB) fails its CRC",
			       (unsigned long long)(first_chunk + c),
			       (unsigned long long)((first_chunk + c) * (RAM_CHUNK >> 20)));
			return -1;
		}
	}
	return 0;
}

int ram_file_read(int fd, uint64_t ram_offset, struct guest_mem *mem, const uint32_t *crcs,
		  struct ram_stats *st)
{
	memset(st, 0, sizeof(*st));
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		struct mem_region *r = &mem->regions[i];
		uint64_t off = ram_region_offset(mem, i), pages = r->size / PAGE;
		uint32_t *page_crc = crcs ? page_crc_alloc(pages) : NULL;
		int ret;

		if (crcs && !page_crc)
			return -1;
		ret = read_region(fd, ram_offset + off, r, page_crc, st);
		if (!ret && crcs)
			ret = check_region(page_crc, pages, crcs + off / RAM_CHUNK, off / RAM_CHUNK);
		free(page_crc);
		if (ret < 0)
			return -1;
		st->pages_zero += pages;
	}
	st->pages_zero -= st->pages_present;
	return 0;
}

int ram_file_map(int fd, uint64_t ram_offset, struct guest_mem *mem)
{
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		struct mem_region *r = &mem->regions[i];
		void *p = mmap(r->hva, r->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd,
			       (off_t)(ram_offset + ram_region_offset(mem, i)));

		if (p == MAP_FAILED) {
			pr_err("cannot map the snapshot's RAM: %s", strerror(errno));
			return -1;
		}
		r->file_backed = true;
	}
	return 0;
}

uint64_t ram_file_pages_present(int fd, uint64_t ram_offset, uint64_t ram_length)
{
	uint64_t pos = ram_offset, end = ram_offset + ram_length, n = 0;

	while (pos < end) {
		off_t data = lseek(fd, (off_t)pos, SEEK_DATA), hole;

		if (data < 0 || (uint64_t)data >= end)
			break;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			break;
		if ((uint64_t)hole > end)
			hole = (off_t)end;
		n += ((uint64_t)hole - (uint64_t)data + PAGE - 1) / PAGE;
		pos = (uint64_t)hole;
	}
	return n;
}

/* ---- live saves: rewrite what the guest dirtied, in place ---- */

/* Pages [p, p + n) of region r, which all have the same zero-ness. */
static int write_dirty_run(int fd, uint64_t base, const struct mem_region *r, uint64_t p,
			   uint64_t n, bool zero, struct ram_stats *st)
{
	if (!zero)
		return write_run(fd, r->hva + p * PAGE, n * PAGE, base + p * PAGE, st);
	/* A page that became zero becomes a hole again: the file never grows
	 * past RAM plus state, whatever the guest does. */
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(base + p * PAGE),
		      (off_t)(n * PAGE)) < 0 && errno != EOPNOTSUPP) {
		pr_err("punching a hole in the snapshot: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int ram_file_write_dirty(int fd, uint64_t ram_offset, const struct guest_mem *mem,
			 uint64_t **bits, uint64_t *chunk_dirty, struct ram_stats *st)
{
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		const struct mem_region *r = &mem->regions[i];
		uint64_t off = ram_region_offset(mem, i), pages = r->size / PAGE;
		uint64_t start = 0, n = 0;
		bool zero = false;

		for (uint64_t p = 0; p <= pages; p++) {
			bool set = p < pages && (bits[i][p / 64] >> (p % 64)) & 1;
			bool z = set && guest_page_is_zero(r->hva + p * PAGE);
			uint64_t chunk = (off + p * PAGE) / RAM_CHUNK;

			if (set)        /* every page: a run may span chunks */
				chunk_dirty[chunk / 64] |= 1ULL << (chunk % 64);
			if (set && n && p == start + n && z == zero && n < 4096) {
				n++;
				continue;
			}
			if (n && write_dirty_run(fd, ram_offset + off, r, start, n, zero, st) < 0)
				return -1;
			n = 0;
			if (!set)
				continue;
			start = p;
			n = 1;
			zero = z;
		}
		memset(bits[i], 0, ((pages + 63) / 64) * sizeof(uint64_t));
	}
	return 0;
}

/* The CRC of chunk c of region r, from memory (untouched pages not read). */
static uint32_t chunk_crc_from_mem(const struct mem_region *r, uint64_t c)
{
	uint64_t per = RAM_CHUNK / PAGE, first = c * per, n = per, pos;
	uint32_t page_crc[RAM_CHUNK / PAGE];
	struct ram_stats st = { 0 };

	if (first + n > r->size / PAGE)
		n = r->size / PAGE - first;
	for (uint64_t i = 0; i < n; i++)
		page_crc[i] = zero_page_crc();
	pos = first * PAGE;
	while (pos < (first + n) * PAGE) {
		off_t d = r->file_backed ? (off_t)pos : lseek(r->memfd, (off_t)pos, SEEK_DATA);
		off_t h = r->file_backed ? (off_t)((first + n) * PAGE) :
			  d < 0 ? -1 : lseek(r->memfd, d, SEEK_HOLE);
		uint64_t end;

		if (d < 0 || h < 0 || (uint64_t)d >= (first + n) * PAGE)
			break;
		end = (uint64_t)h < (first + n) * PAGE ? (uint64_t)h : (first + n) * PAGE;
		/* fd -1: checksums only. */
		write_extent(-1, 0, r, (uint64_t)d, end, page_crc, first, &st);
		pos = end;
	}
	return crc32c(0, page_crc, n * sizeof(uint32_t));
}

void ram_file_update_crcs(const struct guest_mem *mem, const uint64_t *chunk_dirty,
			  uint32_t *crcs)
{
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		const struct mem_region *r = &mem->regions[i];
		uint64_t first = ram_region_offset(mem, i) / RAM_CHUNK;
		uint64_t nchunks = (r->size + RAM_CHUNK - 1) / RAM_CHUNK;

		for (uint64_t c = 0; c < nchunks; c++)
			if ((chunk_dirty[(first + c) / 64] >> ((first + c) % 64)) & 1)
				crcs[first + c] = chunk_crc_from_mem(r, c);
	}
}

uint64_t ram_bits_to_map(const struct guest_mem *mem, uint64_t *const *bits, uint64_t *map)
{
	uint64_t set = 0;

	for (unsigned i = 0; i < mem->nr_regions; i++) {
		uint64_t base = ram_region_offset(mem, i) / PAGE, nw = (mem->regions[i].size / PAGE + 63) / 64;

		for (uint64_t w = 0; w < nw; w++)
			for (uint64_t v = bits[i][w]; v; v &= v - 1) {
				uint64_t g = base + w * 64 + (uint64_t)__builtin_ctzll(v);

				map[g / 64] |= 1ULL << (g % 64);
				set++;
			}
	}
	return set;
}
