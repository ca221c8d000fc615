// SPDX-License-Identifier: MIT
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>

#include "vmm/cli.h"
#include "vmm/log.h"
#include "vmm/version.h"

enum {
	OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_CPUS, OPT_MEMORY, OPT_BOOT,
	OPT_API_SOCK, OPT_NAME, OPT_VERSION, OPT_DISK, OPT_NET, OPT_RNG,
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
	{ "verbose",  no_argument,       NULL, 'v' },
	{ "help",     no_argument,       NULL, 'h' },
	{ "version",  no_argument,       NULL, OPT_VERSION },
	{ NULL, 0, NULL, 0 },
};

static void cli_usage(void)
{
	printf("Usage: minivmm --kernel IMAGE [options]\n"
	       "\n"
	       "Boot a virtual machine on /dev/kvm with the console on stdin/stdout.\n"
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
	       "  --api-sock PATH   control socket\n"
	       "  --name NAME       VM name\n"
	       "  -v, --verbose     more diagnostics on stderr (repeat for debug)\n"
	       "  -h, --help        this help\n"
	       "      --version     print the version\n"
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
	struct sysinfo si;
	uint64_t v, host;

	if (parse_size(arg, 1ULL << 20, &v) < 0) {
		pr_err("--memory '%s': expected a size such as 512M or 4G", arg);
		return -1;
	}
	if (v < CLI_MIN_MEMORY || v > CLI_MAX_MEMORY || v % 4096) {
		pr_err("--memory '%s': must be a multiple of 4 KiB from 4 MiB to 1 TiB", arg);
		return -1;
	}
	if (sysinfo(&si) == 0) {
		host = ((uint64_t)si.totalram + si.totalswap) * si.mem_unit;
		if (v > host) {
			pr_err("--memory '%s': more than this host has (%llu MiB)", arg,
			       (unsigned long long)(host >> 20));
			return -1;
		}
	}
	*out = v;
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

static int cli_option(int opt, char *arg, struct vm_config *cfg)
{
	switch (opt) {
	case OPT_DISK:     return add_disk(arg, cfg);
	case OPT_NET:      return add_net(arg, cfg);
	case OPT_RNG:      cfg->rng = true; return 0;
	case OPT_KERNEL:   cfg->kernel = arg; return 0;
	case OPT_INITRD:   cfg->initrd = arg; return 0;
	case OPT_CMDLINE:  cfg->cmdline = arg; return 0;
	case OPT_CPUS:     return parse_cpus(arg, &cfg->ncpus);
	case OPT_MEMORY:   return parse_memory(arg, &cfg->ram_size);
	case OPT_BOOT:     return parse_boot(arg, &cfg->protocol);
	case OPT_API_SOCK: cfg->api_sock = arg; return 0;
	case OPT_NAME:     cfg->name = arg; return 0;
	case 'v':          cfg->verbose++; return 0;
	default:           return -1;
	}
}

enum cli_result cli_parse(int argc, char **argv, struct vm_config *cfg)
{
	int opt;

	memset(cfg, 0, sizeof(*cfg));
	cfg->cmdline = CLI_DEFAULT_CMDLINE;
	cfg->ncpus = 1;
	cfg->ram_size = CLI_DEFAULT_MEMORY;
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
		if (cli_option(opt, optarg, cfg) < 0)
			return CLI_ERROR;
	}
	if (optind < argc) {
		pr_err("unexpected argument '%s' (try --help)", argv[optind]);
		return CLI_ERROR;
	}
	if (!cfg->kernel) {
		pr_err("no --kernel given (try --help)");
		return CLI_ERROR;
	}
	return CLI_RUN;
}
