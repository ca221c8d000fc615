// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: arbitrary bytes through the destination's stream reader
 * (migration/stream_rx.c over record_read()) and the RAM-batch checker and
 * applier (migration/ram_batch.c), against a small guest_mem shaped like
 * the real one: RAM at 0 and above 4 GiB with a hole between. No KVM.
 *
 * The first byte picks a mode. Raw (even): the rest is the stream as is,
 * which exercises the record codec. Framed (odd): the rest is a list of
 * [u8 type][u16 length][payload] turned into records with valid CRCs, so
 * the fuzzer spends its time in what interprets payloads, not in CRCs it
 * cannot guess.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "migration/crc32c.h"
#include "migration/stream_rx.h"
#include "tests/fuzz/fuzz_common.h"
#include "vmm/guest_mem.h"

#define LOW_RAM   (1ULL << 20)
#define HIGH_GPA  (4ULL << 30)
#define HIGH_RAM  (256ULL << 10)

static struct guest_mem mem;
static int stream_fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_region_init(&mem.regions[0], 0, LOW_RAM, 0, 0);
	fuzz_region_init(&mem.regions[1], HIGH_GPA, HIGH_RAM, 1, 0);
	mem.nr_regions = 2;
	mem.ram_size = LOW_RAM + HIGH_RAM;
	stream_fd = memfd_create("fuzz-stream", MFD_CLOEXEC);
	if (stream_fd < 0)
		abort();
	return 0;
}

static void put_record(uint8_t *out, size_t *pos, uint32_t type, const uint8_t *p, size_t len)
{
	struct record_hdr h = { .type = type, .length = len };
	uint32_t crc = crc32c(crc32c(0, &h, sizeof(h)), p, len);

	memcpy(out + *pos, &h, sizeof(h));
	memcpy(out + *pos + sizeof(h), p, len);
	memcpy(out + *pos + sizeof(h) + len, &crc, sizeof(crc));
	*pos += sizeof(h) + len + sizeof(crc);
}

/* [u8 type][u16 len][payload]...: each frame grows by 20 bytes at most, a
 * frame is at least 3 bytes, so 8 * n bounds the output. */
static uint8_t *frame(const uint8_t *in, size_t n, size_t *outlen)
{
	uint8_t *out = malloc(8 * n + 32);
	size_t pos = 0;

	if (!out)
		abort();
	while (n >= 3) {
		uint32_t type = in[0];
		size_t len = (size_t)in[1] | (size_t)in[2] << 8;

		in += 3;
		n -= 3;
		if (len > n)
			len = n;
		put_record(out, &pos, type, in, len);
		in += len;
		n -= len;
	}
	*outlen = pos;
	return out;
}

static void receive(const uint8_t *buf, size_t len)
{
	struct stream_rx rx;
	struct chan c;

	if (ftruncate(stream_fd, 0) < 0 || pwrite(stream_fd, buf, len, 0) != (ssize_t)len)
		abort();
	chan_init(&c, stream_fd, true, 0, "fuzz");
	stream_rx_init(&rx, &c, false, 0);
	if (stream_rx_open(&rx) == 0 && stream_rx_load(&rx, &mem) == 0) {
		/* The end record's totals were checked against what arrived. */
		if (rx.end.pages_present != rx.ram.pages_data || rx.end.ram_size != mem.ram_size)
			abort();
		stream_rx_wait_go(&rx);
	}
	stream_rx_free(&rx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *framed;
	size_t len;

	if (!size)
		return 0;
	if (!(data[0] & 1)) {
		receive(data + 1, size - 1);
		return 0;
	}
	framed = frame(data + 1, size - 1, &len);
	receive(framed, len);
	free(framed);
	return 0;
}
