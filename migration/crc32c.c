// SPDX-License-Identifier: MIT
/*
 * The hardware path runs three lanes over consecutive thirds of each block
 * (the crc32 instruction has a latency of 3 and a throughput of 1) and
 * joins them by shifting the earlier lanes' registers over the later
 * lanes' length. A register shifted over n zero bytes is the register
 * times x^(8n) modulo the polynomial: for the fixed lane length that is a
 * table, for arbitrary lengths (crc32c_combine) a GF(2) multiplication.
 */
#include <cpuid.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "migration/crc32c.h"

#define CRC32C_POLY 0x82F63B78U /* reflected: bit 31 is x^0 */
#define LANE        1360        /* 3 lanes = 4080: one block per 4 KiB page */

static uint32_t crc_table[256];
static uint32_t x2n[64];                /* x^(2^k) mod P */
static uint32_t lane_shift[4][256];     /* register -> register over LANE zero bytes */
static bool use_hw;

/* a(x) * b(x) mod P, reflected. */
static uint32_t gf2_mulmod(uint32_t a, uint32_t b)
{
	uint32_t p = 0;

	for (uint32_t m = 1U << 31; m; m >>= 1) {
		if (a & m)
			p ^= b;
		b = b & 1 ? (b >> 1) ^ CRC32C_POLY : b >> 1;
	}
	return p;
}

/* x^(8 * n) mod P: what a register is multiplied by over n zero bytes. */
static uint32_t x8n_modp(uint64_t n)
{
	uint32_t p = 1U << 31;  /* x^0 */

	for (unsigned k = 3; n; n >>= 1, k++)
		if (n & 1)
			p = gf2_mulmod(x2n[k], p);
	return p;
}

static void crc32c_init(void)
{
	uint32_t shift;

	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		crc_table[i] = c;
	}
	x2n[0] = 1U << 30;      /* x^1 */
	for (unsigned k = 1; k < 64; k++)
		x2n[k] = gf2_mulmod(x2n[k - 1], x2n[k - 1]);
	shift = x8n_modp(LANE);
	for (unsigned byte = 0; byte < 4; byte++)
		for (uint32_t v = 0; v < 256; v++)
			lane_shift[byte][v] = gf2_mulmod(shift, v << (8 * byte));
	{
		unsigned a, b, c, d;

		use_hw = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2);
	}
}

static uint32_t lane_shift_reg(uint32_t r)
{
	return lane_shift[0][r & 0xff] ^ lane_shift[1][(r >> 8) & 0xff] ^
	       lane_shift[2][(r >> 16) & 0xff] ^ lane_shift[3][r >> 24];
}

static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);       /* callers promise no alignment */
	return v;
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t a = crc;

	while (len >= 3 * LANE) {
		uint64_t b = 0, c = 0;

		for (size_t i = 0; i < LANE; i += 8) {
			a = __builtin_ia32_crc32di(a, load64(p + i));
			b = __builtin_ia32_crc32di(b, load64(p + LANE + i));
			c = __builtin_ia32_crc32di(c, load64(p + 2 * LANE + i));
		}
		a = lane_shift_reg(lane_shift_reg((uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)c;
		p += 3 * LANE;
		len -= 3 * LANE;
	}
	for (; len >= 8; p += 8, len -= 8)
		a = __builtin_ia32_crc32di(a, load64(p));
	crc = (uint32_t)a;
	while (len--)
		crc = __builtin_ia32_crc32qi(crc, *p++);
	return crc;
}

static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, crc32c_init);
	crc = ~crc;
	crc = use_hw ? crc32c_hw(crc, buf, len) : crc32c_sw(crc, buf, len);
	return ~crc;
}

/* The inversions before and after cancel out: crc(AB) = shift(crc(A)) ^ crc(B). */
uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
	pthread_once(&crc_once, crc32c_init);
	return gf2_mulmod(x8n_modp(len_b), crc_a) ^ crc_b;
}
