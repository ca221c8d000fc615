// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
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

/* One byte as log_escape() shows it, into e (room for 4); its length. */
static size_t escape_byte(unsigned char c, char e[4])
{
	static const char hex[] = "0123456789abcdef";

	if (c == '\\') {
		e[0] = e[1] = '\\';
		return 2;
	}
	if (c >= 0x20 && c < 0x7f) {
		e[0] = (char)c;
		return 1;
	}
	e[0] = '\\';
	e[1] = 'x';
	e[2] = hex[c >> 4];
	e[3] = hex[c & 15];
	return 4;
}

const char *log_escape_mem(char *buf, size_t size, const void *s, size_t len)
{
	const unsigned char *p = s;
	size_t used = 0, mark = 0;     /* mark: the last cut with room for "..." */
	char e[4];

	if (!size)
		return buf;
	for (size_t i = 0; i < len && p[i]; i++) {
		size_t n = escape_byte(p[i], e);

		if (used + n >= size) {
			/* Say that it was cut, if the buffer has room to. */
			if (size > 3) {
				memcpy(buf + mark, "...", 3);
				used = mark + 3;
			}
			break;
		}
		memcpy(buf + used, e, n);
		used += n;
		if (used + 3 < size)
			mark = used;
	}
	buf[used] = 0;
	return buf;
}
