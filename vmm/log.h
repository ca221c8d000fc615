/* SPDX-License-Identifier: MIT */
/*
 * Diagnostics. Every error a user sees is one line on stderr starting with
 * "minivmm: ". Warnings that a guest can trigger at will are rate-limited.
 */
#ifndef VMM_LOG_H
#define VMM_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern enum log_level log_threshold;

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* On this thread, also keep the first error message in buf (the migration
 * thread's errors become query-migrate's error-desc); NULL stops it. */
void log_capture_errors(char *buf, size_t len);

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
