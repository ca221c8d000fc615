/* SPDX-License-Identifier: MIT */
/*
 * Command-line parsing. Pure: fills a vm_config, prints one error line on
 * bad input. The flags are a contract (docs/cli.md): never rename them.
 */
#ifndef VMM_CLI_H
#define VMM_CLI_H

#include <stdint.h>

#include "vmm/client.h"
#include "vmm/vm.h"

#define CLI_MIN_MEMORY   (4ULL << 20)
#define CLI_MAX_MEMORY   (1ULL << 40)
#define CLI_DEFAULT_MEMORY (256ULL << 20)
#define CLI_DEFAULT_CMDLINE "console=ttyS0"

enum cli_result {
	CLI_RUN = 0,        /* cfg is ready */
	CLI_DONE = 1,       /* --help/--version printed: exit 0 */
	CLI_CLIENT = 2,     /* a client command (--status, --quit): client_main() */
	CLI_INSPECT = 3,    /* --inspect URI: describe and exit */
	CLI_ERROR = -1,     /* error printed: exit 2 */
};

enum cli_result cli_parse(int argc, char **argv, struct vm_config *cfg);
/* The same, also filling in a client command; CLI_CLIENT when there is one. */
enum cli_result cli_parse_client(int argc, char **argv, struct vm_config *cfg,
				 struct client_request *client);

/* "512M", "5G", "1048576", "64k"... `unit` scales a bare number.
 * Returns -1 on garbage, overflow or a negative number. */
int parse_size(const char *s, uint64_t unit, uint64_t *out);

#endif
