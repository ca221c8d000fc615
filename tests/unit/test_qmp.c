// SPDX-License-Identifier: MIT
/*
 * QMP request parsing and dispatch on hostile input, and the control
 * socket's commands on a VM without vCPUs (no socket, no KVM needed).
 */
#include <check.h>

#include "tests/unit/check_main.h"
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/control.h"
#include "vmm/qmp.h"
#include "vmm/vm.h"

/* ---- a test command table ---- */

static int calls;

static int cmd_echo(struct qmp_request *req)
{
	const char *s = "none";
	bool b = false;
	int64_t n = 0;

	calls++;
	if (qmp_arg_string(req, "s", true, &s) < 0 || qmp_arg_bool(req, "b", false, &b) < 0 ||
	    qmp_arg_int(req, "n", false, &n) < 0)
		return -1;
	req->ret = json_object_new_object();
	json_object_object_add(req->ret, "s", json_object_new_string(s));
	json_object_object_add(req->ret, "b", json_object_new_boolean(b));
	json_object_object_add(req->ret, "n", json_object_new_int64(n));
	return 0;
}

static int cmd_fail_silently(struct qmp_request *req)
{
	(void)req;
	return -1;
}

static int cmd_fail_twice(struct qmp_request *req)
{
	qmp_error(req, QMP_ERR_GENERIC, "first");
	return qmp_error(req, QMP_ERR_GENERIC, "second");
}

static int cmd_noop(struct qmp_request *req)
{
	(void)req;
	calls++;
	return 0;
}

static const char *const echo_args[] = { "s", "b", "n", NULL };

static const struct qmp_command table[] = {
	{ "echo", cmd_echo, echo_args },
	{ "noop", cmd_noop, NULL },
	{ "fail-silently", cmd_fail_silently, NULL },
	{ "fail-twice", cmd_fail_twice, NULL },
	{ NULL, NULL, NULL },
};

static struct json_object *run(const char *line)
{
	struct json_object *r = qmp_dispatch(table, NULL, line, strlen(line), NULL);

	ck_assert_ptr_nonnull(r);
	return r;
}

static const char *err_field(struct json_object *r, const char *field)
{
	struct json_object *e, *v;

	if (!json_object_object_get_ex(r, "error", &e) || !json_object_object_get_ex(e, field, &v))
		return NULL;
	return json_object_get_string(v);
}

/* The reply is an error of `class` whose desc contains `desc`. */
static void expect_error(const char *line, const char *class, const char *desc)
{
	struct json_object *r = run(line);

	ck_assert_msg(err_field(r, "class"), "no error for %s: %s", line, qmp_to_string(r));
	ck_assert_str_eq(err_field(r, "class"), class);
	ck_assert_msg(strstr(err_field(r, "desc"), desc), "%s: desc '%s' lacks '%s'", line,
		      err_field(r, "desc"), desc);
	ck_assert(!json_object_object_get_ex(r, "return", NULL));
	json_object_put(r);
}

START_TEST(malformed_lines)
{
	calls = 0;
	expect_error("", QMP_ERR_GENERIC, "JSON parse error");
	expect_error("   ", QMP_ERR_GENERIC, "JSON parse error");
	expect_error("garbage", QMP_ERR_GENERIC, "JSON parse error");
	expect_error("{", QMP_ERR_GENERIC, "unexpected end of input");
	expect_error("{\"execute\": \"noop\"", QMP_ERR_GENERIC, "unexpected end of input");
	expect_error("{\"execute\": 'noop'}", QMP_ERR_GENERIC, "JSON parse error");
	expect_error("{\"execute\": \"noop\",}", QMP_ERR_GENERIC, "JSON parse error");
	expect_error("{} {}", QMP_ERR_GENERIC, "JSON parse error");
	expect_error("{\"execute\":\"noop\"} x", QMP_ERR_GENERIC, "JSON parse error");
	expect_error("\xff\xfe{}", QMP_ERR_GENERIC, "JSON parse error");
	expect_error("{\"execute\":\"no\xc3\"}", QMP_ERR_GENERIC, "JSON parse error");
	ck_assert_int_eq(calls, 0);
}
END_TEST

START_TEST(not_an_object)
{
	static const char *const lines[] = { "[1]", "1", "-2.5", "null", "true", "\"noop\"", "[]" };

	for (unsigned i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		expect_error(lines[i], QMP_ERR_GENERIC, "must be a JSON object");
}
END_TEST

START_TEST(bad_request_shape)
{
	calls = 0;
	expect_error("{}", QMP_ERR_GENERIC, "lacks member 'execute'");
	expect_error("{\"id\": 1}", QMP_ERR_GENERIC, "lacks member 'execute'");
	expect_error("{\"execute\": 1}", QMP_ERR_GENERIC, "'execute' must be a string");
	expect_error("{\"execute\": null}", QMP_ERR_GENERIC, "'execute' must be a string");
	expect_error("{\"execute\": [\"noop\"]}", QMP_ERR_GENERIC, "'execute' must be a string");
	expect_error("{\"execute\": \"noop\", \"arguments\": []}", QMP_ERR_GENERIC,
		     "'arguments' must be an object");
	expect_error("{\"execute\": \"noop\", \"arguments\": \"x\"}", QMP_ERR_GENERIC,
		     "'arguments' must be an object");
	expect_error("{\"execute\": \"noop\", \"exec\": 1}", QMP_ERR_GENERIC,
		     "member 'exec' is unexpected");
	ck_assert_int_eq(calls, 0);
}
END_TEST

START_TEST(unknown_command)
{
	expect_error("{\"execute\": \"nope\"}", QMP_ERR_NOTFOUND, "The command nope has not been found");
	expect_error("{\"execute\": \"\"}", QMP_ERR_NOTFOUND, "has not been found");
	expect_error("{\"execute\": \"ECHO\", \"arguments\": {\"s\": \"x\"}}", QMP_ERR_NOTFOUND,
		     "ECHO");
}
END_TEST

START_TEST(bad_arguments)
{
	calls = 0;
	expect_error("{\"execute\": \"noop\", \"arguments\": {\"x\": 1}}", QMP_ERR_GENERIC,
		     "Parameter 'x' is unexpected");
	ck_assert_int_eq(calls, 0);
	expect_error("{\"execute\": \"echo\"}", QMP_ERR_GENERIC, "Parameter 's' is missing");
	expect_error("{\"execute\": \"echo\", \"arguments\": {}}", QMP_ERR_GENERIC,
		     "Parameter 's' is missing");
	expect_error("{\"execute\": \"echo\", \"arguments\": {\"s\": 1}}", QMP_ERR_GENERIC,
		     "Invalid parameter type for 's', expected: string");
	expect_error("{\"execute\": \"echo\", \"arguments\": {\"s\": \"a\", \"b\": 1}}",
		     QMP_ERR_GENERIC, "'b', expected: boolean");
	expect_error("{\"execute\": \"echo\", \"arguments\": {\"s\": \"a\", \"n\": 1.5}}",
		     QMP_ERR_GENERIC, "'n', expected: integer");
	expect_error("{\"execute\": \"echo\", \"arguments\": {\"s\": \"a\", \"n\": \"1\"}}",
		     QMP_ERR_GENERIC, "'n', expected: integer");
}
END_TEST

START_TEST(handler_errors)
{
	expect_error("{\"execute\": \"fail-silently\"}", QMP_ERR_GENERIC, "fail-silently failed");
	/* The first error is the cause; later ones do not overwrite it. */
	expect_error("{\"execute\": \"fail-twice\"}", QMP_ERR_GENERIC, "first");
}
END_TEST

START_TEST(success_and_id)
{
	struct json_object *r, *ret, *v;

	r = run("{\"execute\": \"echo\", \"arguments\": {\"s\": \"hi\", \"b\": true, \"n\": -7},"
		" \"id\": {\"tag\": [1, 2]}}");
	ck_assert(json_object_object_get_ex(r, "return", &ret));
	json_object_object_get_ex(ret, "s", &v);
	ck_assert_str_eq(json_object_get_string(v), "hi");
	json_object_object_get_ex(ret, "b", &v);
	ck_assert(json_object_get_boolean(v));
	json_object_object_get_ex(ret, "n", &v);
	ck_assert_int_eq(json_object_get_int64(v), -7);
	ck_assert(json_object_object_get_ex(r, "id", &v));
	ck_assert_str_eq(qmp_to_string(v), "{\"tag\":[1,2]}");
	json_object_put(r);

	/* No result: an empty object; no id: none echoed. */
	r = run("  {\"execute\": \"noop\"}\r\t ");
	ck_assert_str_eq(qmp_to_string(r), "{\"return\":{}}");
	json_object_put(r);

	/* Errors echo the id too, whatever its type. */
	r = run("{\"execute\": \"nope\", \"id\": \"abc\"}");
	ck_assert(json_object_object_get_ex(r, "id", &v));
	ck_assert_str_eq(json_object_get_string(v), "abc");
	json_object_put(r);
	r = run("{\"id\": 5}");
	ck_assert(json_object_object_get_ex(r, "id", &v));
	ck_assert_int_eq(json_object_get_int(v), 5);
	json_object_put(r);
}
END_TEST

START_TEST(hostile_sizes)
{
	size_t n = 10000;
	char *deep = malloc(2 * n + 1);
	char *big = malloc(CONTROL_LINE_MAX);
	struct json_object *r;

	/* Nesting far past the depth limit fails cleanly, not by recursion. */
	memset(deep, '[', n);
	memset(deep + n, ']', n);
	deep[2 * n] = 0;
	expect_error(deep, QMP_ERR_GENERIC, "JSON parse error");
	/* A long but valid line works. */
	memset(big, ' ', CONTROL_LINE_MAX - 1);
	memcpy(big + 100, "{\"execute\":\"noop\"}", 18);
	r = qmp_dispatch(table, NULL, big, CONTROL_LINE_MAX - 1, NULL);
	ck_assert_str_eq(qmp_to_string(r), "{\"return\":{}}");
	json_object_put(r);
	/* An embedded NUL is not the end of the line. */
	r = qmp_dispatch(table, NULL, "{\"execute\":\"noop\"}\0{}", 21, NULL);
	ck_assert_ptr_nonnull(err_field(r, "class"));
	json_object_put(r);
	free(deep);
	free(big);
}
END_TEST

START_TEST(greeting_and_event)
{
	struct json_object *g = qmp_greeting(), *e, *v, *ts;

	ck_assert_str_eq(qmp_to_string(g),
			 "{\"QMP\":{\"version\":{\"minivmm\":\"0.1.0\"},\"capabilities\":[]}}");
	json_object_put(g);
	e = qmp_event("STOP", NULL);
	ck_assert(json_object_object_get_ex(e, "event", &v));
	ck_assert_str_eq(json_object_get_string(v), "STOP");
	ck_assert(json_object_object_get_ex(e, "data", &v));
	ck_assert(json_object_is_type(v, json_type_object));
	ck_assert(json_object_object_get_ex(e, "timestamp", &ts));
	ck_assert(json_object_object_get_ex(ts, "seconds", &v));
	ck_assert_int_gt(json_object_get_int64(v), 1600000000);
	ck_assert(json_object_object_get_ex(ts, "microseconds", &v));
	ck_assert_int_lt(json_object_get_int64(v), 1000000);
	json_object_put(e);
}
END_TEST

/* ---- the real command table on a VM without vCPUs ---- */

static struct vm vm;
static struct control *ctl;

static void vm_setup(void)
{
	memset(&vm, 0, sizeof(vm));
	vm.stop_efd = -1;
	pthread_mutex_init(&vm.pause_lock, NULL);
	pthread_cond_init(&vm.pause_cond, NULL);
	ctl = control_create(&vm);
	ck_assert_ptr_nonnull(ctl);
}

static void vm_teardown(void)
{
	control_free(ctl);
}

static const char *exec_ret(const char *line, const char *field)
{
	static char out[256];
	struct json_object *r = control_execute(ctl, line, strlen(line)), *ret, *v;

	ck_assert_msg(json_object_object_get_ex(r, "return", &ret), "%s: %s", line,
		      qmp_to_string(r));
	out[0] = 0;
	if (field && json_object_object_get_ex(ret, field, &v))
		snprintf(out, sizeof(out), "%s", json_object_get_string(v));
	json_object_put(r);
	return out;
}

static const char *exec_err(const char *line)
{
	static char out[256];
	struct json_object *r = control_execute(ctl, line, strlen(line));

	ck_assert_msg(err_field(r, "desc"), "%s: %s", line, qmp_to_string(r));
	snprintf(out, sizeof(out), "%s", err_field(r, "desc"));
	json_object_put(r);
	return out;
}

START_TEST(control_status_stop_cont)
{
	ck_assert_str_eq(exec_ret("{\"execute\":\"query-status\"}", "status"), "running");
	ck_assert_str_eq(exec_ret("{\"execute\":\"query-status\"}", "running"), "true");
	exec_ret("{\"execute\":\"stop\"}", NULL);
	ck_assert(vm_is_paused(&vm));
	ck_assert_str_eq(exec_ret("{\"execute\":\"query-status\"}", "status"), "paused");
	ck_assert_str_eq(exec_ret("{\"execute\":\"query-status\"}", "running"), "false");
	exec_ret("{\"execute\":\"stop\"}", NULL);           /* idempotent */
	exec_ret("{\"execute\":\"cont\"}", NULL);
	ck_assert(!vm_is_paused(&vm));
	exec_ret("{\"execute\":\"cont\"}", NULL);
	ck_assert_str_eq(exec_ret("{\"execute\":\"query-status\"}", "status"), "running");
	ck_assert_str_eq(exec_err("{\"execute\":\"stop\",\"arguments\":{\"now\":true}}"),
			 "Parameter 'now' is unexpected");
}
END_TEST

/* Someone else's pause (a migration) is not the user's to release. */
START_TEST(control_nested_pause)
{
	vm_pause(&vm);
	ck_assert_str_eq(exec_ret("{\"execute\":\"query-status\"}", "status"), "paused");
	exec_ret("{\"execute\":\"cont\"}", NULL);
	ck_assert_uint_eq(vm.pause_count, 1);
	exec_ret("{\"execute\":\"stop\"}", NULL);
	exec_ret("{\"execute\":\"cont\"}", NULL);
	ck_assert_uint_eq(vm.pause_count, 1);
	vm_resume(&vm);
	ck_assert_str_eq(exec_ret("{\"execute\":\"query-status\"}", "status"), "running");
}
END_TEST

/* --paused: the start-up pause is the user's, and `cont` ends it. */
START_TEST(control_start_paused)
{
	control_free(ctl);
	vm.cfg.start_paused = true;
	vm.pause_count = 1;
	ctl = control_create(&vm);
	ck_assert_str_eq(exec_ret("{\"execute\":\"query-status\"}", "status"), "paused");
	exec_ret("{\"execute\":\"stop\"}", NULL);
	ck_assert_uint_eq(vm.pause_count, 1);
	exec_ret("{\"execute\":\"cont\"}", NULL);
	ck_assert_uint_eq(vm.pause_count, 0);
}
END_TEST

START_TEST(control_quit)
{
	exec_ret("{\"execute\":\"quit\"}", NULL);
	ck_assert_int_eq(atomic_load(&vm.stop_reason), VM_STOP_QUIT);
	ck_assert_str_eq(exec_ret("{\"execute\":\"query-status\"}", "status"), "shutdown");
	ck_assert_str_eq(exec_err("{\"execute\":\"cont\"}"), "the VM is shutting down");
}
END_TEST

START_TEST(control_capabilities_version)
{
	exec_ret("{\"execute\":\"qmp_capabilities\"}", NULL);
	exec_ret("{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[]}}", NULL);
	ck_assert_str_eq(exec_err("{\"execute\":\"qmp_capabilities\","
				  "\"arguments\":{\"enable\":[\"oob\"]}}"),
			 "Capability 'oob' not available");
	ck_assert_str_eq(exec_err("{\"execute\":\"qmp_capabilities\","
				  "\"arguments\":{\"enable\":\"oob\"}}"),
			 "Invalid parameter type for 'enable', expected: array");
	ck_assert_str_eq(exec_ret("{\"execute\":\"query-version\"}", "package"), "0.1.0");
	ck_assert_str_eq(exec_ret("{\"execute\":\"query-version\"}", "minivmm"),
			 "{ \"major\": 0, \"minor\": 1, \"micro\": 0 }");
}
END_TEST

static Suite *qmp_suite(void)
{
	Suite *s = suite_create("qmp");
	TCase *parse = tcase_create("parse");
	TCase *cmds = tcase_create("control");

	tcase_add_test(parse, malformed_lines);
	tcase_add_test(parse, not_an_object);
	tcase_add_test(parse, bad_request_shape);
	tcase_add_test(parse, unknown_command);
	tcase_add_test(parse, bad_arguments);
	tcase_add_test(parse, handler_errors);
	tcase_add_test(parse, success_and_id);
	tcase_add_test(parse, hostile_sizes);
	tcase_add_test(parse, greeting_and_event);
	tcase_add_checked_fixture(cmds, vm_setup, vm_teardown);
	tcase_add_test(cmds, control_status_stop_cont);
	tcase_add_test(cmds, control_nested_pause);
	tcase_add_test(cmds, control_start_paused);
	tcase_add_test(cmds, control_quit);
	tcase_add_test(cmds, control_capabilities_version);
	suite_add_tcase(s, parse);
	suite_add_tcase(s, cmds);
	return s;
}

int main(void)
{
	return check_run(qmp_suite());
}
