// SPDX-License-Identifier: MIT
/*
 * minivmm: parse the command line, build the VM, run it, exit with a
 * status that says how it ended (docs/cli.md).
 */
#include <stdlib.h>
#include <string.h>

#include "migration/incoming.h"
#include "migration/snapshot.h"
#include "vmm/cli.h"
#include "vmm/client.h"
#include "vmm/log.h"
#include "vmm/vm.h"
#include "vmm/lockdown.h"

static int inspect_main(const char *uri)
{
	if (strncmp(uri, "file:", 5) || !uri[5]) {
		pr_err("--inspect '%s': expected file:PATH", uri);
		return EXIT_USAGE;
	}
	return snapshot_inspect(uri + 5) < 0 ? EXIT_USAGE : EXIT_OK;
}

int main(int argc, char **argv)
{
	struct vm_config cfg;
	struct client_request creq;
	static struct vm vm;    /* the one VM of this process */
	int ret;

	switch (cli_parse_client(argc, argv, &cfg, &creq)) {
	case CLI_CLIENT:
		return client_main(&cfg, &creq);
	case CLI_DONE:
		return EXIT_OK;
	case CLI_ERROR:
		return EXIT_USAGE;
	case CLI_INSPECT:
		return inspect_main(cfg.inspect);
	case CLI_RUN:
		break;
	}
	log_threshold = cfg.verbose >= 2 ? LOG_DEBUG : cfg.verbose ? LOG_INFO : LOG_WARN;
	/* Before any thread exists: each installs its own filter later. */
	if (lockdown_prepare(&cfg.lockdown) < 0)
		return EXIT_USAGE;
	if (cfg.incoming) {
		ret = incoming_run(&vm, &cfg);
	} else {
		ret = vm_create(&vm, &cfg);
		if (ret == EXIT_OK)
			ret = vm_run(&vm);
	}
	vm_destroy(&vm);
	return ret;
}
