// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: a snapshot file as --incoming file: and --inspect read
 * it (migration/snapshot_load.c): snapshot_open (magic, header record and
 * layout, the record walk after the RAM area, the optional working set,
 * the end record's totals, the RAM index against the RAM area), then
 * snapshot_load_ram (the index's chunk CRCs against what the RAM area
 * holds, read into guest RAM, or mapped copy-on-write as --lazy=mmap
 * does), snapshot_working_set, and snapshot_inspect (machine and state
 * printers; stdout goes to /dev/null), checking what the file's layout was
 * promised to be once open. Guest RAM is one of two layouts set up once:
 * A, 4 MiB at 0; B, 3 MiB + 4 KiB at 0 and 1 MiB at 4 GiB (a partial
 * chunk, then a second region; pages not a multiple of 64). Safe without
 * KVM: nothing but a memfd standing for the file and the memfds of guest
 * RAM is touched.
 *
 * The input is a file with the real layout, written into a memfd (one,
 * made once; truncated per input) that is opened by its /proc/self/fd path,
 * so the RAM area can sit at its 2 MiB offset without 2 MiB of input:
 *   u8 flags: bit 0 framed (else raw), bit 1 (framed) recompute the RAM
 *             index's chunk CRCs, bit 2 lazy, bit 3 layout B
 *   the header record at offset 0: framed [u8 type][u16 len][payload] with
 *             its CRC computed here; raw, 68 bytes as they are
 *   u8 n, n pages [u16 page of the RAM area][u8 fill byte], each a whole
 *             page of that byte at the header's ram_offset (else 2 MiB)
 *   the rest at the header's meta_offset (if below 64 MiB, else right after
 *             the header): framed records, or raw bytes
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migration/crc32c.h"
#include "migration/ram_file.h"
#include "migration/snapshot.h"
#include "tests/fuzz/fuzz_common.h"
#include "vmm/log.h"

#define FILE_MAX        (64ULL << 20)   /* offsets the input may place things at */
#define PER_CHUNK       (RAM_CHUNK / GUEST_PAGE_SIZE)
#define HDR_REC         (sizeof(struct record_hdr) + sizeof(struct stream_header) + 4)

static struct vm vms[2];
static int file_fd;
static char path[64];
static uint32_t fill_crc[256];
static uint8_t page_buf[GUEST_PAGE_SIZE];
static uint32_t zero_crcs[PER_CHUNK];   /* a chunk of holes' page CRCs */
/* The input's pages, in order (a later one over an earlier one wins). */
static unsigned nr_pages;
static struct { uint16_t page; uint8_t fill; } pages[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct guest_mem *a = &vms[0].mem, *b = &vms[1].mem;
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

	(void)argc;
	(void)argv;
	/* FUZZ_LOG=1: say why each input is refused (when reproducing one). */
	log_threshold = getenv("FUZZ_LOG") ? LOG_DEBUG : LOG_ERR;
	/* --inspect's report: printed, not looked at. */
	if (null < 0 || dup2(null, STDOUT_FILENO) < 0)
		abort();
	close(null);
	fuzz_region_init(&a->regions[0], 0, 4ULL << 20, 0, 0);
	a->nr_regions = 1;
	a->ram_size = 4ULL << 20;
	fuzz_region_init(&b->regions[0], 0, (3ULL << 20) + GUEST_PAGE_SIZE, 0, 0);
	fuzz_region_init(&b->regions[1], 4ULL << 30, 1ULL << 20, 1, 0);
	b->nr_regions = 2;
	b->ram_size = (4ULL << 20) + GUEST_PAGE_SIZE;
	file_fd = memfd_create("fuzz-snapshot", MFD_CLOEXEC);
	if (file_fd < 0)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", file_fd);
	for (unsigned v = 0; v < 256; v++) {
		memset(page_buf, (int)v, sizeof(page_buf));
		fill_crc[v] = crc32c(0, page_buf, sizeof(page_buf));
	}
	for (unsigned p = 0; p < PER_CHUNK; p++)
		zero_crcs[p] = fill_crc[0];
	return 0;
}

static void put(const void *p, size_t len, uint64_t off)
{
	if (len && pwrite(file_fd, p, len, (off_t)off) != (ssize_t)len)
		abort();
}

/* One framed record at *off, its CRC computed; the payload may be patched. */
static void put_record(uint8_t type, const uint8_t *payload, size_t len, uint64_t *off)
{
	struct record_hdr h = { .type = type, .length = len };
	uint32_t crc = crc32c(crc32c(0, &h, sizeof(h)), payload, len);

	put(&h, sizeof(h), *off);
	put(payload, len, *off + sizeof(h));
	put(&crc, sizeof(crc), *off + sizeof(h) + len);
	*off += sizeof(h) + len + sizeof(crc);
}

/* The RAM index's chunk CRCs for what the pages put in the RAM area. */
static void fix_index(const struct guest_mem *mem, uint8_t *index, size_t len)
{
	static uint32_t page_crc[PER_CHUNK];

	for (unsigned i = 0; i < mem->nr_regions; i++) {
		uint64_t first = ram_region_offset(mem, i) / GUEST_PAGE_SIZE;
		uint64_t npages = mem->regions[i].size / GUEST_PAGE_SIZE;

		for (uint64_t c = 0; c * PER_CHUNK < npages; c++) {
			uint64_t n = npages - c * PER_CHUNK < PER_CHUNK ? npages - c * PER_CHUNK : PER_CHUNK;
			uint64_t base = first + c * PER_CHUNK;
			size_t at = 4 + 4 * (base / PER_CHUNK);
			uint32_t crc;

			memcpy(page_crc, zero_crcs, n * 4);
			for (unsigned k = 0; k < nr_pages; k++)
				if (pages[k].page >= base && pages[k].page - base < n)
					page_crc[pages[k].page - base] = fill_crc[pages[k].fill];
			crc = crc32c(0, page_crc, n * 4);
			if (at + 4 <= len)
				memcpy(index + at, &crc, 4);
		}
	}
}

/* Lay the input out as the file; returns the layout's guest RAM. */
static struct vm *build(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	uint8_t flags = get8(&in);
	bool framed = flags & 1;
	struct vm *vm = &vms[(flags >> 3) & 1];
	uint8_t hdr[HDR_REC] = { 0 };
	size_t hlen;
	uint64_t ram_off = RAM_FILE_OFFSET, meta_off, off, x;
	unsigned n;

	if (ftruncate(file_fd, 0) < 0)
		abort();
	if (framed) {
		uint8_t type = get8(&in);
		size_t len = get16(&in);

		if (len > in.n)
			len = in.n;
		off = 0;
		put_record(type, in.p, len, &off);
		hlen = (size_t)off;
		if (pread(file_fd, hdr, sizeof(hdr), 0) < 0)
			abort();
		in.p += len;
		in.n -= len;
	} else {
		hlen = in.n < HDR_REC ? in.n : HDR_REC;
		memcpy(hdr, in.p, hlen);
		put(in.p, hlen, 0);
		in.p += hlen;
		in.n -= hlen;
	}
	/* struct stream_header after the record header: ram_offset at 16, meta_offset at 32. */
	memcpy(&x, hdr + sizeof(struct record_hdr) + 16, 8);
	if (x < FILE_MAX && !(x % GUEST_PAGE_SIZE))
		ram_off = x;
	memcpy(&x, hdr + sizeof(struct record_hdr) + 32, 8);
	meta_off = x < FILE_MAX ? x : hlen;

	nr_pages = n = get8(&in);
	for (unsigned i = 0; i < n; i++) {
		pages[i].page = get16(&in);
		pages[i].fill = get8(&in);
		memset(page_buf, pages[i].fill, sizeof(page_buf));
		put(page_buf, sizeof(page_buf), ram_off + (uint64_t)pages[i].page * GUEST_PAGE_SIZE);
	}

	if (!framed) {
		put(in.p, in.n, meta_off);
		return vm;
	}
	off = meta_off;
	while (in.n >= 3) {
		uint8_t type = get8(&in);
		size_t len = get16(&in);
		uint8_t *copy;

		if (len > in.n)
			len = in.n;
		copy = malloc(len ? len : 1);
		if (!copy)
			abort();
		memcpy(copy, in.p, len);
		if (type == REC_RAM_INDEX && (flags & 2))
			fix_index(&vm->mem, copy, len);
		put_record(type, copy, len, &off);
		free(copy);
		in.p += len;
		in.n -= len;
	}
	return vm;
}

/* Guest RAM back to untouched zeroes (and the memfd mapped again after --lazy). */
static void reset_ram(struct guest_mem *mem)
{
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		struct mem_region *r = &mem->regions[i];

		if (r->file_backed) {
			if (mmap(r->hva, r->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
				 r->memfd, 0) == MAP_FAILED)
				abort();
			r->file_backed = false;
		}
		if (fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			      (off_t)r->size) < 0)
			abort();
	}
}

/* What snapshot_open() promises the restore about the file's layout. */
static void check_layout(const struct snapshot *s)
{
	const struct stream_header *h = &s->hdr;
	struct stat st;

	if (fstat(file_fd, &st) < 0)
		abort();
	if (!(h->flags & FLAG_FILE_LAYOUT) || h->ram_offset % GUEST_PAGE_SIZE ||
	    h->ram_length > h->meta_offset || h->ram_offset > h->meta_offset - h->ram_length ||
	    h->meta_offset > (uint64_t)st.st_size ||
	    h->meta_length > (uint64_t)st.st_size - h->meta_offset ||
	    s->ram_index.length < 4 || (s->ram_index.length - 4) % 4 ||
	    (s->ram_index.length - 4) / 4 * RAM_CHUNK != h->ram_length ||
	    s->end.length != sizeof(s->totals))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm *vm;
	struct snapshot s;

	if (!size)
		return 0;
	vm = build(data, size);
	if (snapshot_open(&s, path) == 0) {
		uint64_t npages = vm->mem.ram_size / GUEST_PAGE_SIZE, count = 0;
		const uint64_t *ws;

		check_layout(&s);
		snapshot_load_ram(&s, vm, data[0] & 4);
		reset_ram(&vm->mem);
		ws = snapshot_working_set(&s, vm, &count);
		/* What a lazy restore then trusts: as many bits as said, none past RAM. */
		if (ws) {
			uint64_t set = 0, words = (npages + 63) / 64;

			for (uint64_t w = 0; w < words; w++)
				set += (uint64_t)__builtin_popcountll(ws[w]);
			if (set != count || (npages % 64 && ws[words - 1] >> (npages % 64)))
				abort();
		}
		snapshot_close(&s);
		snapshot_inspect(path);
	} else {
		snapshot_close(&s);
	}
	return 0;
}
