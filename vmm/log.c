// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "vmm/log.h"

enum log_level log_threshold = LOG_WARN;

static __thread char *capture_buf;
static __thread size_t capture_len;

void log_capture_errors(char *buf, size_t len)
{
	capture_buf = buf;
	capture_len = len;
	if (buf && len)
		buf[0] = 0;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *const prefix[] = { "", "warning: ", "", "debug: " };
	char line[1024];
	va_list ap;

	if (lvl > log_threshold && !(lvl == LOG_ERR && capture_buf))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (lvl == LOG_ERR && capture_buf && !capture_buf[0])
		snprintf(capture_buf, capture_len, "%s", line);
	/* One write, so lines from different threads do not interleave. */
	fprintf(stderr, "minivmm: %s%s\n", prefix[lvl], line);
}

bool log_ratelimit(unsigned *count, long *sec, unsigned burst)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	if (ts.tv_sec != *sec) {
		*sec = ts.tv_sec;
		*count = 0;
	}
	return ++*count <= burst;
}
