// SPDX-License-Identifier: MIT
#include <check.h>

#include "tests/unit/check_main.h"
#include <stdlib.h>

#include "vmm/cli.h"

START_TEST(size_suffixes)
{
	uint64_t v;

	ck_assert_int_eq(parse_size("512M", 1, &v), 0);
	ck_assert_uint_eq(v, 512ULL << 20);
	ck_assert_int_eq(parse_size("5G", 1, &v), 0);
	ck_assert_uint_eq(v, 5ULL << 30);
	ck_assert_int_eq(parse_size("64k", 1, &v), 0);
	ck_assert_uint_eq(v, 64ULL << 10);
	ck_assert_int_eq(parse_size("1T", 1, &v), 0);
	ck_assert_uint_eq(v, 1ULL << 40);
	ck_assert_int_eq(parse_size("2GiB", 1, &v), 0);
	ck_assert_uint_eq(v, 2ULL << 30);
	ck_assert_int_eq(parse_size("300MB", 1, &v), 0);
	ck_assert_uint_eq(v, 300ULL << 20);
	ck_assert_int_eq(parse_size("4096", 1, &v), 0);
	ck_assert_uint_eq(v, 4096);
	ck_assert_int_eq(parse_size("256", 1ULL << 20, &v), 0);
	ck_assert_uint_eq(v, 256ULL << 20);
	ck_assert_int_eq(parse_size("0", 1, &v), 0);
	ck_assert_uint_eq(v, 0);
}
END_TEST

START_TEST(size_garbage)
{
	uint64_t v = 7;

	ck_assert_int_eq(parse_size("", 1, &v), -1);
	ck_assert_int_eq(parse_size(NULL, 1, &v), -1);
	ck_assert_int_eq(parse_size("-1G", 1, &v), -1);
	ck_assert_int_eq(parse_size("G", 1, &v), -1);
	ck_assert_int_eq(parse_size("12X", 1, &v), -1);
	ck_assert_int_eq(parse_size("12Mx", 1, &v), -1);
	ck_assert_int_eq(parse_size(" 12M", 1, &v), -1);
	ck_assert_int_eq(parse_size("99999999999999999999", 1, &v), -1);
	ck_assert_int_eq(parse_size("20000000T", 1, &v), -1);     /* overflows 64 bits */
	ck_assert_uint_eq(v, 7);
}
END_TEST

static enum cli_result parse(struct vm_config *cfg, int argc, const char **argv)
{
	return cli_parse(argc, (char **)argv, cfg);
}

START_TEST(cli_defaults)
{
	struct vm_config cfg;
	const char *argv[] = { "minivmm", "--kernel", "k.elf" };

	ck_assert_int_eq(parse(&cfg, 3, argv), CLI_RUN);
	ck_assert_str_eq(cfg.kernel, "k.elf");
	ck_assert_str_eq(cfg.cmdline, "console=ttyS0");
	ck_assert_uint_eq(cfg.ncpus, 1);
	ck_assert_uint_eq(cfg.ram_size, CLI_DEFAULT_MEMORY);
	ck_assert_int_eq(cfg.protocol, BOOT_AUTO);
}
END_TEST

START_TEST(cli_all_flags)
{
	struct vm_config cfg;
	const char *argv[] = { "minivmm", "--kernel", "k", "--initrd", "i", "--cmdline", "c x",
			       "--cpus", "4", "--memory", "1G", "--boot", "linux64",
			       "--api-sock", "/tmp/s", "--name", "vm1", "-v" };

	ck_assert_int_eq(parse(&cfg, 18, argv), CLI_RUN);
	ck_assert_str_eq(cfg.initrd, "i");
	ck_assert_str_eq(cfg.cmdline, "c x");
	ck_assert_uint_eq(cfg.ncpus, 4);
	ck_assert_uint_eq(cfg.ram_size, 1ULL << 30);
	ck_assert_int_eq(cfg.protocol, BOOT_LINUX64);
	ck_assert_str_eq(cfg.api_sock, "/tmp/s");
	ck_assert_str_eq(cfg.name, "vm1");
	ck_assert_int_eq(cfg.verbose, 1);
}
END_TEST

START_TEST(cli_rejects)
{
	static const char *bad[][3] = {
		{ "--cpus", "0" }, { "--cpus", "65" }, { "--cpus", "two" }, { "--cpus", "2x" },
		{ "--memory", "0" }, { "--memory", "1M" }, { "--memory", "2T" },
		{ "--memory", "lots" }, { "--memory", "4097B" }, { "--boot", "efi" },
		{ "--frobnicate", "1" },
	};
	struct vm_config cfg;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *argv[] = { "minivmm", "--kernel", "k", bad[i][0], bad[i][1] };

		ck_assert_msg(parse(&cfg, 5, argv) == CLI_ERROR, "accepted %s %s",
			      bad[i][0], bad[i][1]);
	}
}
END_TEST

START_TEST(cli_clock)
{
	struct vm_config cfg;
	const char *def[] = { "minivmm", "--incoming", "file:s" };
	const char *cont[] = { "minivmm", "--incoming", "file:s", "--clock=continue" };
	const char *real[] = { "minivmm", "--incoming", "tcp:0:1", "--clock", "realtime" };
	const char *bad[] = { "minivmm", "--incoming", "file:s", "--clock=later" };
	const char *boot[] = { "minivmm", "--kernel", "k", "--clock=realtime" };

	ck_assert_int_eq(parse(&cfg, 3, def), CLI_RUN);
	ck_assert_int_eq(cfg.clock, GUEST_CLOCK_DEFAULT);       /* decided by the URI */
	ck_assert_int_eq(parse(&cfg, 4, cont), CLI_RUN);
	ck_assert_int_eq(cfg.clock, GUEST_CLOCK_CONTINUE);
	ck_assert_int_eq(parse(&cfg, 5, real), CLI_RUN);
	ck_assert_int_eq(cfg.clock, GUEST_CLOCK_REALTIME);
	ck_assert_int_eq(parse(&cfg, 4, bad), CLI_ERROR);
	ck_assert_int_eq(parse(&cfg, 4, boot), CLI_ERROR);      /* only with --incoming */
}
END_TEST

START_TEST(cli_missing)
{
	struct vm_config cfg;
	const char *no_kernel[] = { "minivmm", "--cpus", "2" };
	const char *no_arg[] = { "minivmm", "--kernel" };
	const char *stray[] = { "minivmm", "--kernel", "k", "extra" };

	ck_assert_int_eq(parse(&cfg, 3, no_kernel), CLI_ERROR);
	ck_assert_int_eq(parse(&cfg, 2, no_arg), CLI_ERROR);
	ck_assert_int_eq(parse(&cfg, 4, stray), CLI_ERROR);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cli");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, size_suffixes);
	tcase_add_test(tc, size_garbage);
	tcase_add_test(tc, cli_defaults);
	tcase_add_test(tc, cli_all_flags);
	tcase_add_test(tc, cli_rejects);
	tcase_add_test(tc, cli_clock);
	tcase_add_test(tc, cli_missing);
	suite_add_tcase(s, tc);
	return check_run(s);
}
