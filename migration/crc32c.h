/* SPDX-License-Identifier: MIT */
/*
 * CRC32C (Castagnoli), as used by iSCSI/ext4: the SSE4.2 instruction when
 * the CPU has it (several GB/s), a table otherwise. crc32c(0, p, n) starts
 * a checksum; pass the previous value to continue it.
 */
#ifndef MIGRATION_CRC32C_H
#define MIGRATION_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
