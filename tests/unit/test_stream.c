// SPDX-License-Identifier: MIT
/*
 * The stream codec, CRC32C, the self-describing state tree and the machine
 * description: round trips, and every bound a hostile stream could push on.
 */
#include <check.h>
#include <libfdt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "migration/crc32c.h"
#include "migration/machine.h"
#include "migration/state.h"
#include "migration/stream.h"
#include "tests/unit/check_main.h"
#include "vmm/log.h"

START_TEST(crc32c_vectors)
{
	static const uint8_t zeros[32];
	uint32_t split;

	/* RFC 3720 B.4 test vectors and the classic check value. */
	ck_assert_uint_eq(crc32c(0, "123456789", 9), 0xE3069283);
	ck_assert_uint_eq(crc32c(0, zeros, 32), 0x8A9136AA);
	ck_assert_uint_eq(crc32c(0, "", 0), 0);
	/* Continuing a CRC equals computing it in one go. */
	split = crc32c(crc32c(0, "12345", 5), "6789", 4);
	ck_assert_uint_eq(split, 0xE3069283);
}
END_TEST

/* The three-lane path and crc32c_combine agree with a byte at a time. */
START_TEST(crc32c_lanes_and_combine)
{
	static const size_t lens[] = { 4079, 4080, 4081, 4096, 8160, 12289, 1 << 20 };
	uint8_t *buf = malloc(1 << 20);

	for (size_t i = 0; i < (1 << 20); i++)
		buf[i] = (uint8_t)(i * 2654435761U >> 13);
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		uint32_t bytewise = 0, whole = crc32c(0, buf, lens[k]);
		size_t cut = lens[k] / 3;

		for (size_t i = 0; i < lens[k]; i++)
			bytewise = crc32c(bytewise, buf + i, 1);
		ck_assert_uint_eq(whole, bytewise);
		ck_assert_uint_eq(crc32c_combine(crc32c(0, buf, cut), crc32c(0, buf + cut, lens[k] - cut),
						 lens[k] - cut), whole);
	}
	ck_assert_uint_eq(crc32c_combine(crc32c(0, "12345", 5), crc32c(0, "6789", 4), 4), 0xE3069283);
	ck_assert_uint_eq(crc32c_combine(0xE3069283, 0, 0), 0xE3069283);
	free(buf);
}
END_TEST

static int memfile(void)
{
	return memfd_create("stream", 0);
}

START_TEST(record_round_trip)
{
	int fd = memfile();
	struct chan w, r;
	struct record rec;
	char payload[100];

	for (int i = 0; i < 100; i++)
		payload[i] = (char)i;
	chan_init(&w, fd, true, 0, "test");
	ck_assert_int_eq(record_write(&w, REC_STATE, 3, payload, sizeof(payload)), 0);
	ck_assert_int_eq(record_write(&w, REC_GO, 0, NULL, 0), 0);
	ck_assert_uint_eq(w.records, 2);
	ck_assert_uint_eq(w.bytes, 16 + 100 + 4 + 16 + 4);
	chan_init(&r, fd, true, 0, "test");
	ck_assert_int_eq(record_read(&r, &rec, REC_STATE), 0);
	ck_assert_uint_eq(rec.flags, 3);
	ck_assert_uint_eq(rec.length, 100);
	ck_assert_mem_eq(rec.payload, payload, 100);
	record_free(&rec);
	ck_assert_int_eq(record_read(&r, &rec, 0), 0);
	ck_assert_uint_eq(rec.type, REC_GO);
	ck_assert_ptr_null(rec.payload);
	/* End of stream: a clean error, not a hang. */
	ck_assert_int_eq(record_read(&r, &rec, 0), -1);
	close(fd);
}
END_TEST

/* Write a raw record header + payload + crc (crc as given) at offset 0. */
static int raw_record(uint32_t type, uint64_t length, const void *p, size_t plen, bool good_crc)
{
	int fd = memfile();
	struct record_hdr h = { type, 0, length };
	uint32_t crc = crc32c(crc32c(0, &h, sizeof(h)), p, plen) ^ (good_crc ? 0 : 1);

	ck_assert_int_eq(write(fd, &h, sizeof(h)), sizeof(h));
	if (plen)
		ck_assert_int_eq(write(fd, p, plen), (ssize_t)plen);
	ck_assert_int_eq(write(fd, &crc, 4), 4);
	return fd;
}

static int read_one(int fd, uint32_t want)
{
	struct chan c;
	struct record rec;
	int ret;

	chan_init(&c, fd, true, 0, "test");
	ret = record_read(&c, &rec, want);
	record_free(&rec);
	close(fd);
	return ret;
}

START_TEST(record_bounds)
{
	uint8_t buf[64] = { 1, 2, 3 };

	ck_assert_int_eq(read_one(raw_record(REC_END, 32, buf, 32, true), 0), 0);
	ck_assert_int_eq(read_one(raw_record(REC_END, 32, buf, 32, false), 0), -1);     /* CRC */
	ck_assert_int_eq(read_one(raw_record(0, 0, NULL, 0, true), 0), -1);             /* type 0 */
	ck_assert_int_eq(read_one(raw_record(99, 0, NULL, 0, true), 0), -1);            /* unknown */
	ck_assert_int_eq(read_one(raw_record(REC_END, 33, buf, 33, true), 0), -1);      /* over bound */
	ck_assert_int_eq(read_one(raw_record(REC_GO, 1, buf, 1, true), 0), -1);
	/* A huge length is refused before anything is allocated or read. */
	ck_assert_int_eq(read_one(raw_record(REC_RAM, 1ULL << 62, NULL, 0, true), 0), -1);
	ck_assert_int_eq(read_one(raw_record(REC_STATE, STATE_MAX_SIZE + 1ULL, NULL, 0, true), 0), -1);
	/* Truncated: header says 32, 10 bytes follow. */
	ck_assert_int_eq(read_one(raw_record(REC_END, 32, buf, 10, true), 0), -1);
	/* The wrong type where a specific one is expected. */
	ck_assert_int_eq(read_one(raw_record(REC_END, 32, buf, 32, true), REC_HEADER), -1);
}
END_TEST

/* Every type's bound as docs/migration-format.md states it: a record at it
 * is read, one byte more is refused from its header alone. */
START_TEST(record_bounds_documented)
{
	static const struct { uint32_t type; uint64_t bound; } b[] = {
		{ REC_HEADER, 48 }, { REC_MACHINE, 1 << 20 }, { REC_RAM, 8 + 4096 * 4104ULL },
		{ REC_RAM_INDEX, 64ULL << 20 }, { REC_STATE, 64ULL << 20 }, { REC_END, 32 },
		{ REC_GO, 0 }, { REC_REPLY, 8 + 1024 }, { REC_SYNC, 0 },
		{ REC_POSTCOPY, 24 + (64ULL << 20) }, { REC_PAGE_REQ, 512 * 8 }, { REC_RESUME, 8 },
		{ REC_WORKING_SET, 16 + (64ULL << 20) },
	};
	static uint8_t payload[1 << 20];
	char err[256];

	ck_assert_uint_eq(sizeof(b) / sizeof(b[0]), REC_TYPE_MAX);
	for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++) {
		ck_assert_uint_eq(record_max_length(b[i].type), b[i].bound);
		log_capture_errors(err, sizeof(err));
		ck_assert_int_eq(read_one(raw_record(b[i].type, b[i].bound + 1, NULL, 0, true), 0), -1);
		log_capture_errors(NULL, 0);
		ck_assert_msg(strstr(err, "-byte bound"), "type %u: %s", b[i].type, err);
		if (b[i].bound <= sizeof(payload))
			ck_assert_int_eq(read_one(raw_record(b[i].type, b[i].bound, payload,
							     b[i].bound, true), 0), 0);
	}
}
END_TEST

START_TEST(header_versions)
{
	struct stream_header h, out;
	struct record rec = { .type = REC_HEADER, .length = sizeof(h), .payload = &h };

	stream_header_init(&h, FLAG_FILE_LAYOUT);
	ck_assert_int_eq(stream_header_check(&rec, &out), 0);
	ck_assert_uint_eq(out.flags, FLAG_FILE_LAYOUT);
	h.minor = 7;                    /* newer minor: fine */
	ck_assert_int_eq(stream_header_check(&rec, &out), 0);
	h.major = 2;                    /* newer major: refused */
	ck_assert_int_eq(stream_header_check(&rec, &out), -1);
	h.major = 1;
	h.magic[0] = 'X';
	ck_assert_int_eq(stream_header_check(&rec, &out), -1);
	rec.length = 10;
	ck_assert_int_eq(stream_header_check(&rec, &out), -1);
}
END_TEST

START_TEST(state_round_trip_and_checks)
{
	struct state_writer w;
	struct state_reader r, n, c;
	void *blob;
	size_t len;
	uint32_t u32;
	uint64_t u64;
	uint8_t big[100000], back[100000];
	const char *str;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	ck_assert_int_eq(state_writer_init(&w), 0);
	state_node_begin(&w, "dev0", 3);
	state_put_u32(&w, "a", 0xdeadbeef);
	state_put_u64(&w, "b", 0x0123456789abcdefULL);
	state_put_str(&w, "name", "hello");
	state_put_bytes(&w, "big", big, sizeof(big));   /* forces the buffer to grow */
	state_node_begin(&w, "child", 1);
	state_node_end(&w);
	state_node_end(&w);
	ck_assert_int_eq(state_writer_finish(&w, &blob, &len), 0);
	ck_assert_int_eq(state_reader_open(&r, blob, len), 0);
	ck_assert_int_eq(state_node_open(&r, "dev0", &n), 0);
	ck_assert_uint_eq(n.version, 3);
	ck_assert_int_eq(state_check_version(&n, 3), 0);
	ck_assert_int_eq(state_check_version(&n, 2), -1);       /* newer than we read */
	ck_assert_int_eq(state_get_u32(&n, "a", &u32), 0);
	ck_assert_uint_eq(u32, 0xdeadbeef);
	ck_assert_int_eq(state_get_u64(&n, "b", &u64), 0);
	ck_assert_uint_eq(u64, 0x0123456789abcdefULL);
	ck_assert_int_eq(state_get_str(&n, "name", &str, 16), 0);
	ck_assert_str_eq(str, "hello");
	ck_assert_int_eq(state_get_bytes(&n, "big", back, sizeof(back)), 0);
	ck_assert_mem_eq(back, big, sizeof(big));
	/* Shape checks: wrong sizes, missing properties, strings over their bound. */
	ck_assert_int_eq(state_get_u64(&n, "a", &u64), -1);
	ck_assert_int_eq(state_get_u32(&n, "b", &u32), -1);
	ck_assert_int_eq(state_get_u32(&n, "nope", &u32), -1);
	ck_assert_int_eq(state_get_bytes(&n, "big", back, 10), -1);
	ck_assert_int_eq(state_get_str(&n, "name", &str, 3), -1);
	ck_assert_int_eq(state_get_str(&n, "a", &str, 16), -1);         /* not a string */
	ck_assert_int_eq(state_node_open(&r, "dev1", &c), -1);
	/* Walking the properties: each one's value by its offset. */
	for (int off = state_first_prop(&n); off >= 0; off = state_next_prop(&n, off)) {
		const char *pname = state_prop_name(&n, off);

		ck_assert_ptr_nonnull(pname);
		if (!strcmp(pname, "b")) {
			ck_assert_int_eq(state_prop_u64(&n, off, &u64), 0);
			ck_assert_uint_eq(u64, 0x0123456789abcdefULL);
		} else if (!strcmp(pname, "a")) {
			ck_assert_int_eq(state_prop_u64(&n, off, &u64), -1);    /* 4 bytes */
		}
	}
	ck_assert(state_node_exists(&n, "child"));
	ck_assert_int_eq(state_first_child(&n, &c), 0);
	ck_assert_str_eq(state_node_name(&c), "child");
	/* Corrupt or short blobs never get past the reader. */
	ck_assert_int_eq(state_reader_open(&r, blob, 20), -1);
	ck_assert_int_eq(state_reader_open(&r, blob, len - 1), -1);
	((uint8_t *)blob)[8] ^= 0xff;   /* off_dt_struct */
	ck_assert_int_eq(state_reader_open(&r, blob, len), -1);
	free(blob);
}
END_TEST

/* libfdt 1.6's fdt_check_full() loops forever on a property whose length
 * (0xfffffff4) brings fdt_next_tag()'s offset back to its own tag (found by
 * tests/fuzz/fuzz_state): the reader refuses it before libfdt walks it, and
 * a name running past the structure block too. */
START_TEST(state_struct_block_checked)
{
	static const uint8_t prop_a[8] = { 0, 0, 0, 3, 0, 0, 0, 4 };   /* FDT_PROP, 4 bytes */
	struct state_writer w;
	struct state_reader r;
	void *blob;
	size_t len;
	uint8_t *st, *p;

	ck_assert_int_eq(state_writer_init(&w), 0);
	state_node_begin(&w, "dev0", 1);
	state_put_u32(&w, "a", 1);
	state_node_end(&w);
	ck_assert_int_eq(state_writer_finish(&w, &blob, &len), 0);
	ck_assert_int_eq(state_reader_open(&r, blob, len), 0);
	st = (uint8_t *)blob + fdt_off_dt_struct(blob);
	p = memmem(st, fdt_size_dt_struct(blob), prop_a, sizeof(prop_a));
	ck_assert_ptr_nonnull(p);
	memcpy(p + 4, "\xff\xff\xff\xf4", 4);
	ck_assert_int_eq(state_reader_open(&r, blob, len), -1);
	memcpy(p + 4, "\x00\x00\x00\x04", 4);
	ck_assert_int_eq(state_reader_open(&r, blob, len), 0);
	/* The root node's name without its NUL: runs to the end of the block. */
	memset(st + 4, 'x', fdt_size_dt_struct(blob) - 4);
	ck_assert_int_eq(state_reader_open(&r, blob, len), -1);
	free(blob);
}
END_TEST

/* Only version 17 trees, what minivmm writes: libfdt 1.6's full check
 * dereferences NULL on some older headers (tests/fuzz/fuzz_machine). */
START_TEST(state_version_17_only)
{
	struct state_writer w;
	struct state_reader r;
	void *blob;
	size_t len;

	ck_assert_int_eq(state_writer_init(&w), 0);
	state_node_begin(&w, "dev0", 1);
	state_node_end(&w);
	ck_assert_int_eq(state_writer_finish(&w, &blob, &len), 0);
	ck_assert_uint_eq(fdt_version(blob), 17);
	ck_assert_int_eq(state_reader_open(&r, blob, len), 0);
	fdt_set_version(blob, 16);
	ck_assert_int_eq(state_reader_open(&r, blob, len), -1);
	fdt_set_version(blob, 18);
	ck_assert_int_eq(state_reader_open(&r, blob, len), -1);
	fdt_set_version(blob, 17);
	fdt_set_last_comp_version(blob, 18);
	ck_assert_int_eq(state_reader_open(&r, blob, len), -1);
	fdt_set_last_comp_version(blob, 16);
	ck_assert_int_eq(state_reader_open(&r, blob, len), 0);
	free(blob);
}
END_TEST

/* A blob's node names reach messages and --inspect: escaped in the path
 * every message prints, raw from state_node_name(). */
START_TEST(state_names_escaped)
{
	struct state_writer w;
	struct state_reader r, n, c;
	void *blob;
	size_t len;

	ck_assert_int_eq(state_writer_init(&w), 0);
	state_node_begin(&w, "dev\x1b[2J\nFAKE", 1);
	state_node_begin(&w, "q\\\r", 1);
	state_node_end(&w);
	state_node_end(&w);
	ck_assert_int_eq(state_writer_finish(&w, &blob, &len), 0);
	ck_assert_int_eq(state_reader_open(&r, blob, len), 0);
	ck_assert_int_eq(state_first_child(&r, &n), 0);
	ck_assert_str_eq(state_node_name(&n), "dev\x1b[2J\nFAKE");
	ck_assert_str_eq(n.path, "/dev\\x1b[2J\\x0aFAKE");
	ck_assert_int_eq(state_first_child(&n, &c), 0);
	ck_assert_str_eq(c.path, "/dev\\x1b[2J\\x0aFAKE/q\\\\\\x0d");
	free(blob);
}
END_TEST

START_TEST(machine_round_trip_and_backends)
{
	static struct vm vm;
	struct vm_config out, cmd = { 0 };
	void *blob;
	size_t len;

	memset(&vm, 0, sizeof(vm));
	vm.nr_vcpus = 4;
	vm.mem.ram_size = 1ULL << 30;
	vm.tsc_khz = 2500000;
	vm.cfg.nr_disks = 1;
	vm.cfg.disks[0] = (struct disk_config){ .path = "/img/a.raw", .serial = "s1", .readonly = true };
	vm.cfg.nr_nets = 1;
	vm.cfg.nets[0] = (struct net_config){ .tap = "tap7" };
	vm.cfg.rng = true;
	ck_assert_int_eq(machine_save(&vm, &blob, &len), 0);
	/* Backends named by the stream are refused unless confirmed or accepted. */
	ck_assert_int_eq(machine_load(blob, len, &cmd, false, &out), -1);
	ck_assert_int_eq(machine_load(blob, len, &cmd, true, &out), 0);
	ck_assert_uint_eq(out.ncpus, 4);
	ck_assert_uint_eq(out.ram_size, 1ULL << 30);
	ck_assert_str_eq(out.disks[0].path, "/img/a.raw");
	ck_assert(out.disks[0].readonly);
	ck_assert_str_eq(out.disks[0].serial, "s1");
	ck_assert_str_eq(out.nets[0].tap, "tap7");
	ck_assert(out.rng);
	/* Confirmation by the command line: its paths win, in order. */
	cmd.nr_disks = 1;
	cmd.disks[0] = (struct disk_config){ .path = "/img/b.raw" };
	cmd.nr_nets = 1;
	cmd.nets[0] = (struct net_config){ .tap = "tap9" };
	ck_assert_int_eq(machine_load(blob, len, &cmd, false, &out), 0);
	ck_assert_str_eq(out.disks[0].path, "/img/b.raw");
	ck_assert_str_eq(out.nets[0].tap, "tap9");
	/* A count that does not match, and shape overrides that differ. */
	cmd.nr_disks = 2;
	ck_assert_int_eq(machine_load(blob, len, &cmd, false, &out), -1);
	cmd.nr_disks = 1;
	cmd.cpus_set = true;
	cmd.ncpus = 2;
	ck_assert_int_eq(machine_load(blob, len, &cmd, false, &out), -1);
	cmd.ncpus = 4;
	ck_assert_int_eq(machine_load(blob, len, &cmd, false, &out), 0);
	cmd.memory_set = true;
	cmd.ram_size = 512ULL << 20;
	ck_assert_int_eq(machine_load(blob, len, &cmd, false, &out), -1);
	/* Garbage. */
	ck_assert_int_eq(machine_load("not a tree", 10, &cmd, true, &out), -1);
	free(blob);
}
END_TEST

/* The stream's backend names in the refusal are escaped: one line, inert. */
START_TEST(machine_backends_named_escaped)
{
	static struct vm vm;
	struct vm_config out, cmd = { 0 };
	char err[512];
	void *blob;
	size_t len;

	memset(&vm, 0, sizeof(vm));
	vm.nr_vcpus = 1;
	vm.mem.ram_size = 64ULL << 20;
	vm.cfg.nr_disks = 1;
	vm.cfg.disks[0] = (struct disk_config){ .path = "/img/\x1b[2J\nFAKE LINE" };
	vm.cfg.nr_nets = 1;
	vm.cfg.nets[0] = (struct net_config){ .tap = "t\x1b]0;x\x07" };
	ck_assert_int_eq(machine_save(&vm, &blob, &len), 0);
	log_capture_errors(err, sizeof(err));
	ck_assert_int_eq(machine_load(blob, len, &cmd, false, &out), -1);
	log_capture_errors(NULL, 0);
	ck_assert_ptr_nonnull(strstr(err, "disk /img/\\x1b[2J\\x0aFAKE LINE, tap t\\x1b]0;x\\x07;"));
	for (const char *p = err; *p; p++)
		ck_assert(*p >= 0x20 && *p < 0x7f);
	free(blob);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stream");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, crc32c_vectors);
	tcase_add_test(tc, crc32c_lanes_and_combine);
	tcase_add_test(tc, record_round_trip);
	tcase_add_test(tc, record_bounds);
	tcase_add_test(tc, record_bounds_documented);
	tcase_add_test(tc, header_versions);
	tcase_add_test(tc, state_round_trip_and_checks);
	tcase_add_test(tc, state_struct_block_checked);
	tcase_add_test(tc, state_version_17_only);
	tcase_add_test(tc, state_names_escaped);
	tcase_add_test(tc, machine_round_trip_and_backends);
	tcase_add_test(tc, machine_backends_named_escaped);
	suite_add_tcase(s, tc);
	return check_run(s);
}
