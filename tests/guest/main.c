// SPDX-License-Identifier: MIT
/*
 * The BSP at CPL3: copies what the loader handed over (PVH start info or
 * Linux boot_params: command line, memory map, RSDP) into its own memory
 * before anything can overwrite it, starts the APs, prints READY, then runs
 * one cooperative loop: console, heartbeat and its own share of the work in
 * steps of at most BSP_STEP_NS, sleeping at most BSP_SLEEP_NS at a time so
 * typed commands are answered within ~2 ms. Command-line work (fill=,
 * verify, dirty=, poweroff) is queued as console commands and runs first.
 * docs/test-guest.md is the contract.
 */
#include "guest.h"
#include "virtio.h"

#define HVM_START_MAGIC 0x336ec578
#define E820_RAM        1
#define MAX_MEMMAP      64
#define MAX_BOOT_CMDS   4
#define BSP_STEP_NS     (2 * NSEC_PER_MSEC)   /* work between console polls */
#define BSP_SLEEP_NS    (2 * NSEC_PER_MSEC)   /* longest idle wait: console latency */
#define PROBE_STEP      (2 * MiB)
#define PROBE_LIMIT     (3 * GiB)
#define K_PROBE         0x5a5aa5a5c3c33c3cULL

struct hvm_start_info {
	u32 magic, version, flags, nr_modules;
	u64 modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	u32 memmap_entries, reserved;
};

struct hvm_memmap_entry {
	u64 addr, size;
	u32 type, reserved;
};

u64 boot_ns;
static u64 ready_ns;
static char cmdline[1024];
static u64 rsdp_hint;
static struct mem_region ram[MAX_MEMMAP];
static unsigned nram;
static u64 mem_bytes;
static u64 hb_period_ns = 1000 * NSEC_PER_MSEC, hb_next, hb_seq;
static char boot_cmds[MAX_BOOT_CMDS][64];
static unsigned nboot_cmds, boot_cmd_next;

static void add_ram(u64 base, u64 size)
{
	unsigned i = nram;

	if (!size || nram == MAX_MEMMAP)
		return;
	while (i && ram[i - 1].base > base) {   /* keep sorted */
		ram[i] = ram[i - 1];
		i--;
	}
	ram[i] = (struct mem_region){ base, size };
	nram++;
	mem_bytes += size;
}

static void read_start_info(u32 pa)
{
	const struct hvm_start_info *si = phys(pa);
	const struct hvm_memmap_entry *mm;
	unsigned i;

	if (!pa || si->magic != HVM_START_MAGIC)
		return;
	rsdp_hint = si->rsdp_paddr;
	if (si->cmdline_paddr) {
		const char *s = phys(si->cmdline_paddr);

		for (i = 0; i < sizeof(cmdline) - 1 && s[i]; i++)
			cmdline[i] = s[i];
	}
	if (si->version < 1 || !si->memmap_paddr)
		return;
	mm = phys(si->memmap_paddr);
	for (i = 0; i < si->memmap_entries && i < MAX_MEMMAP; i++)
		if (mm[i].type == E820_RAM)
			add_ram(mm[i].addr, mm[i].size);
}

/* Linux boot_params ("zero page") offsets, for the linux64 entry */
#define BP_ACPI_RSDP    0x070
#define BP_EXT_CMDLINE  0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_HDR_MAGIC    0x202
#define BP_CMDLINE      0x228
#define BP_E820_TABLE   0x2d0
#define HDRS_MAGIC      0x53726448      /* "HdrS" */

static void read_boot_params(u64 bp)
{
	const u8 *p = phys(bp);
	u64 cmd, entry[2];
	u32 v, type;
	unsigned i;

	memcpy(&v, p + BP_HDR_MAGIC, 4);
	if (!bp || v != HDRS_MAGIC)
		return;
	memcpy(&rsdp_hint, p + BP_ACPI_RSDP, 8);
	memcpy(&v, p + BP_CMDLINE, 4);
	cmd = v;
	memcpy(&v, p + BP_EXT_CMDLINE, 4);
	cmd |= (u64)v << 32;
	for (i = 0; cmd && i < sizeof(cmdline) - 1 && ((const char *)phys(cmd))[i]; i++)
		cmdline[i] = ((const char *)phys(cmd))[i];
	for (i = 0; i < p[BP_E820_ENTRIES] && i < 128; i++) {
		memcpy(entry, p + BP_E820_TABLE + 20 * i, 16);
		memcpy(&type, p + BP_E820_TABLE + 20 * i + 16, 4);
		if (type == E820_RAM)
			add_ram(entry[0], entry[1]);
	}
}

/*
 * No memory map (start info version 0, or none): assume RAM from 0 to
 * 0x9F000 and from 1 MiB up to the first 2 MiB step past the image where
 * a written value does not read back, at most 3 GiB.
 */
static void probe_ram(void)
{
	u64 pa = ALIGN_UP((u64)(uintptr_t)__image_end, PROBE_STEP);

	for (; pa < PROBE_LIMIT; pa += PROBE_STEP) {
		volatile u64 *p = phys(pa);
		u64 old = *p;

		*p = pa ^ K_PROBE;
		if (*p != (pa ^ K_PROBE))
			break;
		*p = old;
	}
	add_ram(0, 0x9f000);
	add_ram(MiB, pa - MiB);
}

/* What boot.S's page tables map: 1 GiB pages above PD_GIB need PDPE1GB. */
static u64 map_limit(void)
{
	return have_1g ? 512 * GiB : PD_GIB * GiB;
}

/* ---- commands ---- */

static bool size_arg(const char *s, u64 *bytes)
{
	if (s && !strcmp(s, "all")) {
		*bytes = work_bytes();
		return *bytes != 0;
	}
	if (!s || !parse_size(s, bytes) || !*bytes) {
		out_line("ERR bad size: %s", s ? s : "(none)");
		return false;
	}
	*bytes = ALIGN_UP(*bytes, PAGE_SIZE);
	if (*bytes > work_bytes()) {
		out_line("ERR size exceeds the workload area (%llu bytes)", work_bytes());
		return false;
	}
	return true;
}

static void cmd_dirty(char *a, char *b)
{
	u64 bytes, rate;

	if (a && (!strcmp(a, "stop") || !strcmp(a, "0"))) {
		work_dirty(0, 0);
	} else if (size_arg(a, &bytes)) {
		if (!b || !parse_u64(b, &rate))
			out_line("ERR bad rate: %s", b ? b : "(none)");
		else
			work_dirty(bytes, rate);
	}
}

/* `reset` / `reset kbd`: pulse the i8042's reset line (command 0xFE on
 * port 0x64), as Linux's reboot=k does; `reset triple`: a triple fault.
 * Either way a VMM should treat it as a reboot. */
static void cmd_reset(const char *how)
{
	out_line("RESET %s", *how ? how : "kbd");
	if (!strcmp(how, "triple"))
		triple_fault();
	outb(0x64, 0xfe);
	triple_fault();         /* no i8042 answered: fall back */
}

static void cmd_stats(void)
{
	u64 filled, dirtied, dbytes, drate;

	work_stats(&filled, &dirtied, &dbytes, &drate);
	out_line("STATS pages_filled=%llu pages_dirtied=%llu hb=%llu uptime_ms=%llu cpus=%u "
		 "mem_mb=%llu work_bytes=%llu dirty_bytes=%llu dirty_rate=%llu clock=%s "
		 "pvsleep=%u cpl3_ns=%llu ready_ns=%llu",
		 filled, dirtied, hb_seq, (now_ns(0) - boot_ns) / NSEC_PER_MSEC, ncpus,
		 mem_bytes >> 20, work_bytes(), dbytes, drate, clock_name, pvsleep_ok, boot_ns,
		 ready_ns);
}

/* `genid`: the VM generation ID where the DSDT says it is (GENID none if not). */
static void cmd_genid(void)
{
	static const char hex[] = "0123456789abcdef";
	u64 pa = acpi_vmgenid_addr();
	char str[40], *q = str;
	const u8 *id;
	unsigned i;

	if (!pa || pa + 16 > mem_bytes) {
		out_line("GENID none");
		return;
	}
	id = phys(pa);
	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*q++ = '-';
		*q++ = hex[id[i] >> 4];
		*q++ = hex[id[i] & 15];
	}
	*q = 0;
	out_line("GENID %s addr=0x%llx", str, pa);
}

static void cmd_hb(const char *a)
{
	u64 ms;

	if (!a || !parse_u64(a, &ms)) {
		out_line("ERR bad period: %s", a ? a : "(none)");
		return;
	}
	hb_period_ns = ms * NSEC_PER_MSEC;
	hb_next = now_ns(0) + hb_period_ns;
}

static void run_command(char *line)
{
	char *p = line, *cmd = next_token(&p), *a, *b;
	u64 bytes;

	if (!cmd || virtio_command(cmd, p))
		return;
	a = next_token(&p);
	b = next_token(&p);
	if (!strcmp(cmd, "fill")) {
		if (size_arg(a, &bytes))
			work_fill(bytes);
	} else if (!strcmp(cmd, "dirty")) {
		cmd_dirty(a, b);
	} else if (!strcmp(cmd, "idle")) {
		work_dirty(0, 0);
	} else if (!strcmp(cmd, "verify")) {
		work_verify();
	} else if (!strcmp(cmd, "hb")) {
		cmd_hb(a);
	} else if (!strcmp(cmd, "stats")) {
		cmd_stats();
	} else if (!strcmp(cmd, "genid")) {
		cmd_genid();
	} else if (!strcmp(cmd, "poweroff")) {
		poweroff();
	} else if (!strcmp(cmd, "reset")) {
		cmd_reset(a);
	} else if (!strcmp(cmd, "help")) {
		out_line("commands: fill SIZE|all, dirty SIZE RATE, dirty stop, idle, verify, "
			 "hb MS, stats, genid, poweroff, reset [kbd|triple], devices, blk ..., net ..., rng N, help "
			 "(SIZE: bytes or K/M/G suffix)");
	} else {
		out_line("ERR unknown command: %s", cmd);
	}
}

/* ---- kernel command line: hb=, fill=, dirty=, rate=, verify, poweroff ---- */

static void queue(const char *a, const char *b, const char *c)
{
	char line[64];
	size_t n;

	if (nboot_cmds == MAX_BOOT_CMDS)
		return;
	n = (size_t)snprintf(line, sizeof(line), "%s %s %s", a, b, c);
	memcpy(boot_cmds[nboot_cmds++], line, n + 1);
}

static void parse_cmdline(void)
{
	char buf[sizeof(cmdline)], *p = buf, *tok;
	const char *fill = NULL, *dirty = NULL, *rate = "0";
	bool verify = false, off = false;

	memcpy(buf, cmdline, sizeof(buf));
	while ((tok = next_token(&p))) {
		if (!memcmp(tok, "hb=", 3))
			cmd_hb(tok + 3);
		else if (!memcmp(tok, "fill=", 5))
			fill = tok + 5;
		else if (!memcmp(tok, "dirty=", 6))
			dirty = tok + 6;
		else if (!memcmp(tok, "rate=", 5))
			rate = tok + 5;
		else if (!strcmp(tok, "verify"))
			verify = true;
		else if (!strcmp(tok, "poweroff"))
			off = true;
	}
	if (fill)
		queue("fill", fill, "");
	if (verify)
		queue("verify", "", "");
	if (dirty)
		queue("dirty", dirty, rate);
	if (off)
		queue("poweroff", "", "");
}

/* ---- main loop ---- */

static u64 heartbeat(void)
{
	u64 now = now_ns(0);

	if (!hb_period_ns)
		return ~0ULL;
	if (now >= hb_next) {
		out_line("HB seq=%llu ns=%llu", ++hb_seq, now);
		hb_next += hb_period_ns;
		if (hb_next <= now)
			hb_next = now + hb_period_ns;
	}
	return hb_next - now;
}

static void __noreturn main_loop(void)
{
	char *line = NULL;
	u64 wait, hb_wait, dev_wait;

	for (;;) {
		if (!line)
			line = con_poll_line();
		hb_wait = heartbeat();
		dev_wait = virtio_poll();
		wait = worker_step(0, BSP_STEP_NS);
		work_poll();
		if (!work_busy() && boot_cmd_next < nboot_cmds) {
			run_command(boot_cmds[boot_cmd_next++]);
			continue;
		}
		if (!work_busy() && line) {
			run_command(line);
			line = NULL;
			continue;
		}
		if (hb_wait < wait)
			wait = hb_wait;
		if (dev_wait < wait)
			wait = dev_wait;
		if (wait > BSP_SLEEP_NS)
			wait = BSP_SLEEP_NS;
		if (wait)
			work_wait(0, wait);
	}
}

static void __noreturn bsp_run(void)
{
	unsigned expected;

	time_init();
	boot_ns = now_ns(0);
	con_init();
	out_line("minivmm-test-guest %d", GUEST_VERSION);
	acpi_init(rsdp_hint);
	expected = acpi.madt_cpus;
	if (expected > MAX_CPUS)
		expected = MAX_CPUS;
	smp_kick(expected);
	if (!nram)
		probe_ram();
	virtio_setup(ram, nram, cmdline);       /* takes its DMA pool out of ram[] */
	work_init(ram, nram, map_limit());
	parse_cmdline();
	smp_wait(expected);
	ready_ns = now_ns(0);
	out_line("READY cpus=%u mem=%llu ns=%llu", ncpus, mem_bytes >> 20, ready_ns);
	if (hb_period_ns)
		hb_next = now_ns(0) + hb_period_ns;
	main_loop();
}

/* CPL3 entries of the BSP (boot.S): PVH, and the 64-bit Linux boot protocol. */
void __noreturn bsp_pvh(unsigned slot, u32 start_info)
{
	(void)slot;
	memset(__bss_start, 0, (size_t)(__bss_end - __bss_start));
	read_start_info(start_info);
	bsp_run();
}

void __noreturn bsp_linux64(unsigned slot, u64 boot_params)
{
	(void)slot;
	memset(__bss_start, 0, (size_t)(__bss_end - __bss_start));
	read_boot_params(boot_params);
	bsp_run();
}
