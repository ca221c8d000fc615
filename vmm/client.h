/* SPDX-License-Identifier: MIT */
/*
 * Client mode: `minivmm [--api-sock PATH | --name NAME] --status|--quit`
 * talks to a running VM over its control socket and exits. Without
 * --api-sock the VM is found in the default socket folder (control.h).
 */
#ifndef VMM_CLIENT_H
#define VMM_CLIENT_H

#include <stdbool.h>

enum client_cmd {
	CLIENT_NONE = 0,
	CLIENT_STATUS,          /* print the run state, one line */
	CLIENT_QUIT,            /* stop the VM, wait until its process is gone */
	CLIENT_MIGRATE,         /* migrate/snapshot to arg, with progress; 0 when done */
};

struct client_request {
	enum client_cmd cmd;
	const char *arg;        /* for commands that take one */
	bool checkpoint;        /* --migrate: keep the source running */
	bool keep_paused;       /* --migrate: keep the source paused, not exiting */
	int postcopy;           /* --migrate: CLIENT_POSTCOPY_* */
	bool resume;            /* --migrate: continue a paused postcopy */
	const char *tls_creds;  /* --migrate --tls-creds DIR: set as tls-creds first */
};

enum {
	CLIENT_POSTCOPY_OFF,
	CLIENT_POSTCOPY_FIRST_PASS,     /* --postcopy: switch after the first full pass */
	CLIENT_POSTCOPY_AUTO,           /* --postcopy=auto: when precopy would need throttling */
};

struct vm_config;

#define CLIENT_TIMEOUT_MS      10000   /* per reply */
#define CLIENT_QUIT_TIMEOUT_MS 30000   /* for the VM process to exit */

/* Run the request against the VM that cfg->api_sock / cfg->name select.
 * Returns the process exit status: 0 done, 1 the VM or the link failed,
 * 2 no such VM / several VMs and no --name / bad socket path. */
int client_main(const struct vm_config *cfg, const struct client_request *req);

#endif
