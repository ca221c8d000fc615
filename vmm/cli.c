// SPDX-License-Identifier: MIT
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/cli.h"
#include "vmm/guest_mem.h"
#include "vmm/log.h"
#include "vmm/version.h"

enum {
	OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_CPUS, OPT_MEMORY, OPT_BOOT,
	OPT_API_SOCK, OPT_NAME, OPT_VERSION, OPT_DISK, OPT_NET, OPT_RNG,
	OPT_STATUS, OPT_QUIT,
	OPT_INCOMING, OPT_PAUSED, OPT_ACCEPT_BACKENDS, OPT_LAZY, OPT_CLOCK, OPT_INSPECT, OPT_MIGRATE, OPT_CHECKPOINT, OPT_KEEP_PAUSED, OPT_POSTCOPY, OPT_RESUME, OPT_DIRTY_RING, OPT_SECCOMP, OPT_USER, OPT_CHROOT, OPT_TLS_CREDS,
};

static const struct option cli_options[] = {
	{ "kernel",   required_argument, NULL, OPT_KERNEL },
	{ "initrd",   required_argument, NULL, OPT_INITRD },
	{ "cmdline",  required_argument, NULL, OPT_CMDLINE },
	{ "cpus",     required_argument, NULL, OPT_CPUS },
	{ "memory",   required_argument, NULL, OPT_MEMORY },
	{ "boot",     required_argument, NULL, OPT_BOOT },
	{ "api-sock", required_argument, NULL, OPT_API_SOCK },
	{ "name",     required_argument, NULL, OPT_NAME },
	{ "disk",     required_argument, NULL, OPT_DISK },
	{ "net",      required_argument, NULL, OPT_NET },
	{ "rng",      no_argument,       NULL, OPT_RNG },
	{ "incoming", required_argument, NULL, OPT_INCOMING },
	{ "paused",   no_argument,       NULL, OPT_PAUSED },
	{ "accept-backends", no_argument, NULL, OPT_ACCEPT_BACKENDS },
	{ "lazy",     optional_argument, NULL, OPT_LAZY },
	{ "clock",    required_argument, NULL, OPT_CLOCK },
	{ "inspect",  required_argument, NULL, OPT_INSPECT },
	{ "migrate",  required_argument, NULL, OPT_MIGRATE },
	{ "checkpoint", no_argument,     NULL, OPT_CHECKPOINT },
	{ "keep-source-paused", no_argument, NULL, OPT_KEEP_PAUSED },
	{ "postcopy", optional_argument, NULL, OPT_POSTCOPY },
	{ "resume",   no_argument,       NULL, OPT_RESUME },
	{ "dirty-ring", required_argument, NULL, OPT_DIRTY_RING },
	{ "seccomp",  required_argument, NULL, OPT_SECCOMP },
	{ "user",     required_argument, NULL, OPT_USER },
	{ "chroot",   required_argument, NULL, OPT_CHROOT },
	{ "tls-creds", required_argument, NULL, OPT_TLS_CREDS },
	{ "status",   no_argument,       NULL, OPT_STATUS },
	{ "quit",     no_argument,       NULL, OPT_QUIT },
	{ "verbose",  no_argument,       NULL, 'v' },
	{ "help",     no_argument,       NULL, 'h' },
	{ "version",  no_argument,       NULL, OPT_VERSION },
	{ NULL, 0, NULL, 0 },
};

static void cli_usage(void)
{
	printf("Usage: minivmm --kernel IMAGE [options]\n"
	       "       minivmm [--api-sock PATH | --name NAME] --status | --quit\n"
	       "\n"
	       "Boot a virtual machine on /dev/kvm with the console on stdin/stdout,\n"
	       "or talk to a running one through its control socket.\n"
	       "\n"
	       "  --kernel PATH     bzImage, ELF vmlinux, or ELF with a PVH note\n"
	       "  --initrd PATH     initial ramdisk\n"
	       "  --cmdline STR     kernel command line (default \"%s\")\n"
	       "  --cpus N          vCPUs, 1..%d (default 1)\n"
	       "  --memory SIZE     guest RAM, with K/M/G/T suffix; a bare number is MiB\n"
	       "                    (default 256M)\n"
	       "  --boot PROTO      auto (default), pvh or linux64 (the 64-bit Linux\n"
	       "                    boot protocol, also for ELF images with a PVH note)\n"
	       "  --disk PATH[,readonly][,serial=ID]\n"
	       "                    virtio-blk on a raw image (repeatable)\n"
	       "  --net tap=NAME[,mac=MAC]\n"
	       "                    virtio-net on an existing tap device (repeatable)\n"
	       "  --rng             virtio-rng fed from the host's getrandom()\n"
	       "  --api-sock PATH   control socket (default: $XDG_RUNTIME_DIR/minivmm/NAME.sock,\n"
	       "                    or /run/minivmm/NAME.sock; NAME is --name or the pid)\n"
	       "  --name NAME       VM name\n"
	       "  --incoming URI    receive a live migration (tcp:[HOST]:PORT, unix:PATH) or\n"
	       "                    restore a snapshot (file:PATH) instead of booting\n"
	       "  --accept-backends with --incoming: open the disks and taps the stream names\n"
	       "  --lazy[=MODE]     with --incoming file: run at once, RAM brought in on first\n"
	       "                    touch (RAM CRCs are then not checked up front). MODE uffd\n"
	       "                    (default): pages read into the VM's own RAM through\n"
	       "                    userfaultfd and pushed in the background until the VM no\n"
	       "                    longer needs the file; ws: the same, the snapshot's working\n"
	       "                    set read in first; mmap: the file mapped copy-on-write\n"
	       "  --paused          start with vCPUs stopped (resume with `cont`)\n"
	       "  --clock=POLICY    with --incoming: continue (guest time stood still while\n"
	       "                    the VM did not run; default for tcp:/unix:) or realtime\n"
	       "                    (it jumps by the real time since the save; default for file:)\n"
	       "  --dirty-ring N    KVM dirty ring entries per vCPU for live migration\n"
	       "                    (power of two, default 4096; 0 = dirty bitmap)\n"
	       "  --inspect URI     describe a snapshot (file:PATH) and exit\n"
	       "  --seccomp=off     no syscall filters (debugging only; default on)\n"
	       "  --tls-creds DIR   with --incoming tcp:/unix: or --migrate: TLS with the\n"
	       "                    credentials in DIR (keys.psk, or X.509 PEM files)\n"
	       "  --user UID:GID    once set up, run as this user and group (numbers)\n"
	       "  --chroot DIR      once set up, run with DIR as the root directory\n"

	       "  -v, --verbose     more diagnostics on stderr (repeat for debug)\n"
	       "  -h, --help        this help\n"
	       "      --version     print the version\n"
	       "\n"
	       "Client commands (to a running VM; without --api-sock: the one VM in the\n"
	       "default socket folder, or the one --name picks):\n"
	       "  --status          print running, paused, postmigrate or shutdown\n"
	       "  --quit            stop the VM and wait until it has exited\n"
	       "  --migrate URI     migrate or snapshot the VM (file:PATH), with a progress\n"
	       "                    bar; exits 0 only when the destination has it\n"
	       "  --checkpoint      with --migrate file: keep the VM running afterwards\n"
	       "  --keep-source-paused  with --migrate: keep the VM paused (not exiting)\n"
	       "  --postcopy[=auto] with --migrate tcp:/unix:: switch to postcopy after the\n"
	       "                    first pass, or (auto) when precopy would need throttling\n"
	       "  --resume          with --migrate: continue a paused postcopy over a new link\n"
	       "                    (the destination's migrate-recover address)\n"
	       "                    afterwards, for inspection; it never runs again\n"
	       "\n"
	       "Console: Ctrl-A x quits, Ctrl-A h helps (when stdin is a terminal).\n"
	       "Exit status: 0 guest powered off/reset or quit, 1 VM failure,\n"
	       "2 usage or configuration error. See docs/cli.md.\n",
	       CLI_DEFAULT_CMDLINE, VM_MAX_VCPUS);
}

int parse_size(const char *s, uint64_t unit, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = unit;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	switch (toupper((unsigned char)*end)) {
	case 0:   break;
	case 'B': mul = 1; end++; break;
	case 'K': mul = 1ULL << 10; end++; break;
	case 'M': mul = 1ULL << 20; end++; break;
	case 'G': mul = 1ULL << 30; end++; break;
	case 'T': mul = 1ULL << 40; end++; break;
	default:  return -1;
	}
	/* Accept "512M", "512MB", "512MiB". */
	if (mul != 1 && (!strcasecmp(end, "iB") || !strcasecmp(end, "B")))
		end += strlen(end);
	if (*end || (v && mul > UINT64_MAX / v))
		return -1;
	*out = v * mul;
	return 0;
}

static int parse_cpus(const char *arg, unsigned *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || *end || end == arg || v < 1 || v > VM_MAX_VCPUS) {
		pr_err("--cpus '%s': expected a number from 1 to %d", arg, VM_MAX_VCPUS);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

static int parse_memory(const char *arg, uint64_t *out)
{
	uint64_t v, host = guest_mem_host_limit();

	if (parse_size(arg, 1ULL << 20, &v) < 0) {
		pr_err("--memory '%s': expected a size such as 512M or 4G", arg);
		return -1;
	}
	if (v < CLI_MIN_MEMORY || v > CLI_MAX_MEMORY || v % 4096) {
		pr_err("--memory '%s': must be a multiple of 4 KiB from 4 MiB to 1 TiB", arg);
		return -1;
	}
	if (v > host) {
		pr_err("--memory '%s': more than this host has (%llu MiB)", arg,
		       (unsigned long long)(host >> 20));
		return -1;
	}
	*out = v;
	return 0;
}

/* --clock=continue|realtime */
static int parse_clock(const char *arg, enum clock_policy *out)
{
	if (!strcmp(arg, "continue"))
		*out = GUEST_CLOCK_CONTINUE;
	else if (!strcmp(arg, "realtime"))
		*out = GUEST_CLOCK_REALTIME;
	else {
		pr_err("--clock=%s: unknown policy (continue or realtime)", arg);
		return -1;
	}
	return 0;
}

/* --lazy, --lazy=mmap, --lazy=uffd, --lazy=ws */
static int parse_lazy(const char *arg, struct vm_config *cfg)
{
	cfg->lazy = true;
	if (arg && !strcmp(arg, "mmap"))
		return 0;
	/* uffd by default: measured faster to a heartbeat and to a full verify
	 * than mmap, and the VM ends up owning its RAM (docs/cli.md). */
	if (!arg || !strcmp(arg, "uffd") || !strcmp(arg, "ws")) {
		cfg->lazy_uffd = true;
		cfg->lazy_ws = arg && !strcmp(arg, "ws");
		return 0;
	}
	pr_err("--lazy=%s: unknown mode (mmap, uffd or ws)", arg);
	return -1;
}

static int parse_dirty_ring(const char *arg, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || *end || end == arg || v > (1UL << 20) || (v && (v & (v - 1)))) {
		pr_err("--dirty-ring '%s': expected 0 (use the bitmap) or a power of two up to 1048576",
		       arg);
		return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

/* --seccomp=on|off: off is for debugging a filter, never for production. */
static int parse_seccomp(const char *arg, bool *off)
{
	if (!strcmp(arg, "on") || !strcmp(arg, "off")) {
		*off = !strcmp(arg, "off");
		return 0;
	}
	pr_err("--seccomp '%s': expected on or off", arg);
	return -1;
}

/* --user UID:GID, numeric: names would need the user database at a time
 * we may already be in the chroot. */
static int parse_user(const char *arg, struct lockdown_config *ld)
{
	const char *s = arg;
	unsigned long uid, gid;
	char *end;

	errno = 0;
	uid = strtoul(s, &end, 10);
	if (errno || end == s || *end != ':' || uid >= 0xffffffffUL)
		goto bad;
	s = end + 1;
	gid = strtoul(s, &end, 10);
	if (errno || end == s || *end || gid >= 0xffffffffUL)
		goto bad;
	ld->user_set = true;
	ld->uid = (uid_t)uid;
	ld->gid = (gid_t)gid;
	return 0;
bad:
	pr_err("--user '%s': expected UID:GID (numbers)", arg);
	return -1;
}

static int parse_chroot(const char *arg, struct lockdown_config *ld)
{
	if (arg[0] != '/') {
		pr_err("--chroot '%s': expected an absolute path", arg);
		return -1;
	}
	ld->chroot_dir = arg;
	return 0;
}

static int parse_boot(const char *arg, enum boot_protocol *out)
{
	if (!strcmp(arg, "auto"))
		*out = BOOT_AUTO;
	else if (!strcmp(arg, "pvh"))
		*out = BOOT_PVH;
	else if (!strcmp(arg, "linux64"))
		*out = BOOT_LINUX64;
	else {
		pr_err("--boot '%s': expected auto, pvh or linux64", arg);
		return -1;
	}
	return 0;
}

static int add_disk(char *arg, struct vm_config *cfg)
{
	if (cfg->nr_disks == VM_MAX_DISKS) {
		pr_err("--disk: at most %d disks", VM_MAX_DISKS);
		return -1;
	}
	return disk_config_parse(arg, &cfg->disks[cfg->nr_disks++]);
}

static int add_net(char *arg, struct vm_config *cfg)
{
	if (cfg->nr_nets == VM_MAX_NICS) {
		pr_err("--net: at most %d NICs", VM_MAX_NICS);
		return -1;
	}
	return net_config_parse(arg, &cfg->nets[cfg->nr_nets++]);
}

static int parse_postcopy(const char *arg, struct client_request *client)
{
	if (!arg) {
		client->postcopy = CLIENT_POSTCOPY_FIRST_PASS;
		return 0;
	}
	if (!strcmp(arg, "auto")) {
		client->postcopy = CLIENT_POSTCOPY_AUTO;
		return 0;
	}
	pr_err("--postcopy='%s': expected --postcopy (after the first pass) or --postcopy=auto", arg);
	return -1;
}

static int set_client(struct client_request *client, enum client_cmd cmd)
{
	if (client->cmd != CLIENT_NONE && client->cmd != cmd) {
		pr_err("one client command at a time (--status, --quit, --migrate)");
		return -1;
	}
	client->cmd = cmd;
	return 0;
}

static int cli_option(int opt, char *arg, struct vm_config *cfg, struct client_request *client)
{
	switch (opt) {
	case OPT_STATUS:   return set_client(client, CLIENT_STATUS);
	case OPT_QUIT:     return set_client(client, CLIENT_QUIT);
	case OPT_MIGRATE:  client->arg = arg; return set_client(client, CLIENT_MIGRATE);
	case OPT_CHECKPOINT: client->checkpoint = true; return 0;
	case OPT_KEEP_PAUSED: client->keep_paused = true; return 0;
	case OPT_POSTCOPY: return parse_postcopy(arg, client);
	case OPT_RESUME:   client->resume = true; return 0;
	case OPT_DIRTY_RING: return parse_dirty_ring(arg, &cfg->dirty_ring);
	case OPT_SECCOMP:  return parse_seccomp(arg, &cfg->lockdown.seccomp_off);
	case OPT_USER:     return parse_user(arg, &cfg->lockdown);
	case OPT_CHROOT:   return parse_chroot(arg, &cfg->lockdown);
	case OPT_TLS_CREDS: cfg->tls_creds = client->tls_creds = arg; return 0;
	case OPT_DISK:     return add_disk(arg, cfg);
	case OPT_NET:      return add_net(arg, cfg);
	case OPT_RNG:      cfg->rng = true; return 0;
	case OPT_INCOMING: cfg->incoming = arg; return 0;
	case OPT_PAUSED:   cfg->start_paused = true; return 0;
	case OPT_ACCEPT_BACKENDS: cfg->accept_backends = true; return 0;
	case OPT_LAZY:     return parse_lazy(arg, cfg);
	case OPT_CLOCK:    cfg->clock_set = true; return parse_clock(arg, &cfg->clock);
	case OPT_INSPECT:  cfg->inspect = arg; return 0;
	case OPT_KERNEL:   cfg->kernel = arg; return 0;
	case OPT_INITRD:   cfg->initrd = arg; return 0;
	case OPT_CMDLINE:  cfg->cmdline = arg; return 0;
	case OPT_CPUS:     cfg->cpus_set = true; return parse_cpus(arg, &cfg->ncpus);
	case OPT_MEMORY:   cfg->memory_set = true; return parse_memory(arg, &cfg->ram_size);
	case OPT_BOOT:     return parse_boot(arg, &cfg->protocol);
	case OPT_API_SOCK: cfg->api_sock = arg; return 0;
	case OPT_NAME:     cfg->name = arg; return 0;
	case 'v':          cfg->verbose++; return 0;
	default:           return -1;
	}
}

/* A client command talks to a VM that exists: VM-building flags make no sense. */
static enum cli_result cli_client_check(const struct vm_config *cfg)
{
	if (cfg->kernel || cfg->initrd || cfg->nr_disks || cfg->nr_nets) {
		pr_err("--status and --quit talk to a running VM: drop --kernel, --initrd, "
		       "--disk and --net");
		return CLI_ERROR;
	}
	return CLI_CLIENT;
}

static enum cli_result cli_vm_check(const struct vm_config *cfg);

enum cli_result cli_parse(int argc, char **argv, struct vm_config *cfg)
{
	struct client_request client;

	return cli_parse_client(argc, argv, cfg, &client);
}

enum cli_result cli_parse_client(int argc, char **argv, struct vm_config *cfg,
				 struct client_request *client)
{
	int opt;

	memset(cfg, 0, sizeof(*cfg));
	memset(client, 0, sizeof(*client));
	cfg->cmdline = CLI_DEFAULT_CMDLINE;
	cfg->ncpus = 1;
	cfg->ram_size = CLI_DEFAULT_MEMORY;
	cfg->dirty_ring = DIRTY_RING_DEFAULT;
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":vh", cli_options, NULL)) != -1) {
		if (opt == 'h') {
			cli_usage();
			return CLI_DONE;
		}
		if (opt == OPT_VERSION) {
			printf("minivmm %s\n", MINIVMM_VERSION);
			return CLI_DONE;
		}
		if (opt == '?' || opt == ':') {
			pr_err("%s '%s' (try --help)",
			       opt == ':' ? "missing argument for" : "unknown option",
			       argv[optind - 1]);
			return CLI_ERROR;
		}
		if (cli_option(opt, optarg, cfg, client) < 0)
			return CLI_ERROR;
	}
	if (optind < argc) {
		pr_err("unexpected argument '%s' (try --help)", argv[optind]);
		return CLI_ERROR;
	}
	if ((client->checkpoint || client->keep_paused || client->postcopy || client->resume) &&
	    client->cmd != CLIENT_MIGRATE) {
		pr_err("--%s goes with --migrate", client->checkpoint ? "checkpoint" :
		       client->keep_paused ? "keep-source-paused" :
		       client->postcopy ? "postcopy" : "resume");
		return CLI_ERROR;
	}
	if (client->checkpoint && client->keep_paused) {
		pr_err("--checkpoint (keep running) and --keep-source-paused exclude each other");
		return CLI_ERROR;
	}
	if (client->cmd != CLIENT_NONE)
		return cli_client_check(cfg);
	return cli_vm_check(cfg);
}

/* Exactly one of: boot a kernel, restore/receive (--incoming), --inspect. */
static enum cli_result cli_vm_check(const struct vm_config *cfg)
{
	if (cfg->inspect) {
		if (cfg->kernel || cfg->incoming) {
			pr_err("--inspect only reads a snapshot: drop --kernel and --incoming");
			return CLI_ERROR;
		}
		return CLI_INSPECT;
	}
	if (cfg->incoming) {
		if (cfg->kernel || cfg->initrd) {
			pr_err("--incoming builds the VM from the stream: drop --kernel and --initrd");
			return CLI_ERROR;
		}
		return CLI_RUN;
	}
	if (cfg->lazy || cfg->accept_backends || cfg->clock) {
		pr_err("--lazy, --accept-backends and --clock go with --incoming");
		return CLI_ERROR;
	}
	if (!cfg->kernel) {
		pr_err("no --kernel given (try --help)");
		return CLI_ERROR;
	}
	return CLI_RUN;
}
