// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "vmm/log.h"

enum log_level log_threshold = LOG_WARN;

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *const prefix[] = { "", "warning: ", "", "debug: " };
	char line[1024];
	va_list ap;

	if (lvl > log_threshold)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
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
