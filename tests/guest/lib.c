// SPDX-License-Identifier: MIT
/*
 * The little of a C library the guest needs: memory and string helpers
 * (GCC may emit calls to memset/memcpy even in freestanding code), a small
 * vsnprintf, and number/size parsing for the command line and the console.
 */
#include "guest.h"

void *memset(void *d, int c, size_t n)
{
	void *ret = d;

	asm volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return ret;
}

void *memcpy(void *d, const void *s, size_t n)
{
	void *ret = d;

	asm volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
	return ret;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const u8 *x = a, *y = b;

	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x - *y;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return (u8)*a - (u8)*b;
}

struct outbuf {
	char *p;
	size_t left;            /* room, not counting the NUL */
	size_t len;
};

static void put(struct outbuf *o, char c)
{
	if (o->left) {
		*o->p++ = c;
		o->left--;
	}
	o->len++;
}

static void put_num(struct outbuf *o, u64 v, unsigned base, bool neg)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (neg)
		put(o, '-');
	while (n)
		put(o, tmp[--n]);
}

/* %s %c %d %u %x with optional l/ll/z, and %%. Nothing else is needed. */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct outbuf o = { buf, size ? size - 1 : 0, 0 };
	int lng;

	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			put(&o, *fmt);
			continue;
		}
		for (lng = 0; fmt[1] == 'l' || fmt[1] == 'z'; fmt++)
			lng++;
		switch (*++fmt) {
		case 's': {
			const char *s = va_arg(ap, const char *);

			while (*s)
				put(&o, *s++);
			break;
		}
		case 'c':
			put(&o, (char)va_arg(ap, int));
			break;
		case 'd': {
			s64 v = lng ? va_arg(ap, s64) : va_arg(ap, int);

			put_num(&o, v < 0 ? -(u64)v : (u64)v, 10, v < 0);
			break;
		}
		case 'u':
		case 'x':
			put_num(&o, lng ? va_arg(ap, u64) : va_arg(ap, unsigned),
				*fmt == 'x' ? 16 : 10, false);
			break;
		case '\0':
			fmt--;
			break;
		default:
			put(&o, *fmt);
		}
	}
	if (size)
		*o.p = '\0';
	return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

bool parse_u64(const char *s, u64 *out)
{
	u64 v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (~0ULL - 9) / 10)
			return false;
		v = v * 10 + (u64)(*s - '0');
	}
	*out = v;
	return true;
}

/* "123", "64K", "64M", "5G" (also lower case); bytes without a suffix. */
bool parse_size(const char *s, u64 *out)
{
	char num[24];
	size_t n = strlen(s);
	unsigned shift = 0;
	u64 v;

	if (!n || n >= sizeof(num))
		return false;
	switch (s[n - 1] | 0x20) {
	case 'k': shift = 10; break;
	case 'm': shift = 20; break;
	case 'g': shift = 30; break;
	case 't': shift = 40; break;
	}
	if (shift)
		n--;
	memcpy(num, s, n);
	num[n] = '\0';
	if (!parse_u64(num, &v) || v > (~0ULL >> shift))
		return false;
	*out = v << shift;
	return true;
}

/* Splits off the next whitespace-separated token; NULL at the end. */
char *next_token(char **p)
{
	char *s = *p, *tok;

	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	if (!*s)
		return NULL;
	tok = s;
	while (*s && *s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
		s++;
	if (*s)
		*s++ = '\0';
	*p = s;
	return tok;
}
