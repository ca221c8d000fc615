// SPDX-License-Identifier: MIT
/*
 * minivmm: parse the command line, build the VM, run it, exit with a
 * status that says how it ended (docs/cli.md).
 */
#include <stdlib.h>

#include "vmm/cli.h"
#include "vmm/log.h"
#include "vmm/vm.h"

int main(int argc, char **argv)
{
	struct vm_config cfg;
	static struct vm vm;    /* the one VM of this process */
	int ret;

	switch (cli_parse(argc, argv, &cfg)) {
	case CLI_DONE:
		return EXIT_OK;
	case CLI_ERROR:
		return EXIT_USAGE;
	case CLI_RUN:
		break;
	}
	log_threshold = cfg.verbose >= 2 ? LOG_DEBUG : cfg.verbose ? LOG_INFO : LOG_WARN;
	ret = vm_create(&vm, &cfg);
	if (ret == EXIT_OK)
		ret = vm_run(&vm);
	vm_destroy(&vm);
	return ret;
}
