/* SPDX-License-Identifier: MIT */
/*
 * Diagnostics. Every error a user sees is one line on stderr starting with
 * "minivmm: ". Warnings that a guest can trigger at will are rate-limited.
 */
#ifndef VMM_LOG_H
#define VMM_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern enum log_level log_threshold;

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* On this thread, also keep the first error message in buf (the migration
 * thread's errors become query-migrate's error-desc); NULL stops it. */
void log_capture_errors(char *buf, size_t len);

/* Room for up to n bytes once escaped by log_escape(), the NUL included. */
#define ESCAPED_SIZE(n) (4 * (n) + 1)

/*
 * A string from a file or a peer (a snapshot's disk path, a node name, a
 * reply's text), made fit for a terminal or a log line: printable ASCII as
 * is, a backslash as \\, every other byte as \xNN, so that it can neither
 * send the terminal a control sequence nor start a line of its own. Reads
 * up to `len` bytes of `s`, or to its NUL; writes at most `size` bytes to
 * `buf`, the NUL included, cutting only between whole escapes and then
 * ending in "...". Returns `buf`.
 */
const char *log_escape_mem(char *buf, size_t size, const void *s, size_t len);

static inline const char *log_escape(char *buf, size_t size, const char *s)
{
	return log_escape_mem(buf, size, s, SIZE_MAX);
}

/* True at most `burst` times per second for this `state` (one static per call site). */
bool log_ratelimit(unsigned *state_count, long *state_sec, unsigned burst);

#define pr_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define pr_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define pr_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define pr_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#define log_ratelimited(lvl, ...) do {                                    \
		static unsigned __rl_n; static long __rl_s;               \
		if ((lvl) <= log_threshold &&                             \
		    log_ratelimit(&__rl_n, &__rl_s, 10))                  \
			log_msg(lvl, __VA_ARGS__);                        \
	} while (0)
#define pr_warn_ratelimited(...) log_ratelimited(LOG_WARN, __VA_ARGS__)
#define pr_info_ratelimited(...) log_ratelimited(LOG_INFO, __VA_ARGS__)

#endif
