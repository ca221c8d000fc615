// SPDX-License-Identifier: MIT
#include <check.h>
#include <string.h>

#include "tests/unit/check_main.h"
#include "vmm/log.h"

START_TEST(escape_printable_as_is)
{
	char buf[ESCAPED_SIZE(64)];

	ck_assert_str_eq(log_escape(buf, sizeof(buf), "/srv/img/disk 1.raw"), "/srv/img/disk 1.raw");
	ck_assert_str_eq(log_escape(buf, sizeof(buf), " ~!\"#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}"),
			 " ~!\"#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}");
	ck_assert_str_eq(log_escape(buf, sizeof(buf), ""), "");
}
END_TEST

START_TEST(escape_everything_else)
{
	char buf[ESCAPED_SIZE(64)];

	/* A terminal's escape sequence and a forged line come out inert. */
	ck_assert_str_eq(log_escape(buf, sizeof(buf), "\x1b[2J\nFAKE LINE"), "\\x1b[2J\\x0aFAKE LINE");
	ck_assert_str_eq(log_escape(buf, sizeof(buf), "a\\x1b"), "a\\\\x1b");
	ck_assert_str_eq(log_escape(buf, sizeof(buf), "\r\t\x01\x1f\x7f\x80\xff"),
			 "\\x0d\\x09\\x01\\x1f\\x7f\\x80\\xff");
	ck_assert_str_eq(log_escape(buf, sizeof(buf), "caf\xc3\xa9"), "caf\\xc3\\xa9");
}
END_TEST

START_TEST(escape_mem_stops_at_len_or_nul)
{
	char buf[ESCAPED_SIZE(16)];

	ck_assert_str_eq(log_escape_mem(buf, sizeof(buf), "abcdef", 3), "abc");
	ck_assert_str_eq(log_escape_mem(buf, sizeof(buf), "ab\0cd", 5), "ab");
	ck_assert_str_eq(log_escape_mem(buf, sizeof(buf), "\x1b", 1), "\\x1b");
	ck_assert_str_eq(log_escape_mem(buf, sizeof(buf), "xyz", 0), "");
}
END_TEST

START_TEST(escape_cut_between_escapes)
{
	char buf[16];

	memset(buf, '#', sizeof(buf));
	/* Exactly fits: no mark. */
	ck_assert_str_eq(log_escape(buf, 5, "abcd"), "abcd");
	/* One too many: cut where "..." still fits. */
	ck_assert_str_eq(log_escape(buf, 5, "abcde"), "a...");
	/* Never half an escape: "\x1b" is whole or gone. */
	ck_assert_str_eq(log_escape(buf, 8, "\x1b\x1b\x1b"), "\\x1b...");
	ck_assert_str_eq(log_escape(buf, 7, "\x1b\x1b"), "...");
	/* Too small for the mark: only what fits, still terminated. */
	ck_assert_str_eq(log_escape(buf, 3, "abc"), "ab");
	ck_assert_str_eq(log_escape(buf, 1, "abc"), "");
	ck_assert_str_eq(log_escape(buf, 4, "\x1b"), "...");
	/* Nothing written past `size`. */
	memset(buf, '#', sizeof(buf));
	log_escape(buf, 6, "\x01\x02\x03\x04");
	ck_assert_int_eq(buf[6], '#');
	ck_assert_uint_le(strlen(buf), 5);
	buf[0] = '#';
	ck_assert_ptr_eq(log_escape(buf, 0, "abc"), buf);
	ck_assert_int_eq(buf[0], '#');
}
END_TEST

int main(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("escape");

	tcase_add_test(tc, escape_printable_as_is);
	tcase_add_test(tc, escape_everything_else);
	tcase_add_test(tc, escape_mem_stops_at_len_or_nul);
	tcase_add_test(tc, escape_cut_between_escapes);
	suite_add_tcase(s, tc);
	return check_run(s);
}
