/* SPDX-License-Identifier: MIT */
/*
 * Who connected to an incoming migration, and whether it is a source at
 * all. Used by the destination's accept loop (migration/incoming_stream.c).
 */
#ifndef MIGRATION_INCOMING_PEER_H
#define MIGRATION_INCOMING_PEER_H

#include <stddef.h>

/* "127.0.0.1:41234", "[::1]:41234", or for a unix socket "pid 123 uid 0". */
void incoming_peer_name(int fd, char *buf, size_t len);

/* NULL if the connection starts like a minivmm stream (a header record with
 * its magic), within timeout_s; else why not ("closed without a word", "not
 * a minivmm stream"...). Reads nothing: it only peeks. */
const char *incoming_not_a_source(int fd, unsigned timeout_s);

#endif
