/* SPDX-License-Identifier: MIT */
/*
 * CRC32C (Castagnoli), as used by iSCSI/ext4: the SSE4.2 instruction in
 * three independent lanes when the CPU has it (>10 GB/s), a table
 * otherwise. crc32c(0, p, n) starts a checksum; pass the previous value to
 * continue it.
 */
#ifndef MIGRATION_CRC32C_H
#define MIGRATION_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* CRC of A followed by B, from crc32c(0, A) and crc32c(0, B) and B's length:
 * lets a writer checksum data as it produces it, before the bytes that
 * precede it in the record are known. */
uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

#endif
