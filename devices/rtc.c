// SPDX-License-Identifier: MIT
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arch/x86/layout.h"
#include "devices/rtc.h"
#include "migration/state.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define RTC_SECONDS      0x00
#define RTC_MINUTES      0x02
#define RTC_HOURS        0x04
#define RTC_DAY_OF_WEEK  0x06
#define RTC_DAY          0x07
#define RTC_MONTH        0x08
#define RTC_YEAR         0x09
#define RTC_REG_A        0x0A
#define RTC_REG_B        0x0B
#define RTC_REG_C        0x0C
#define RTC_REG_D        0x0D
#define RTC_CENTURY      0x32

#define REG_B_24H        0x02
#define REG_B_BINARY     0x04
#define REG_D_VALID      0x80
#define CMOS_SIZE        128
#define RTC_STATE_VERSION 1

struct rtc {
	pthread_mutex_t lock;
	uint8_t index;
	uint8_t cmos[CMOS_SIZE];
};

static uint8_t rtc_encode(const struct rtc *r, int v)
{
	if (r->cmos[RTC_REG_B] & REG_B_BINARY)
		return (uint8_t)v;
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static uint8_t rtc_hours(const struct rtc *r, int h)
{
	bool pm = h >= 12;

	if (r->cmos[RTC_REG_B] & REG_B_24H)
		return rtc_encode(r, h);
	h %= 12;
	return (uint8_t)(rtc_encode(r, h ? h : 12) | (pm ? 0x80 : 0));
}

/* Time registers are computed on every read: no drift, nothing to migrate. */
static uint8_t rtc_read_reg(const struct rtc *r, uint8_t idx)
{
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	switch (idx) {
	case RTC_SECONDS:     return rtc_encode(r, tm.tm_sec);
	case RTC_MINUTES:     return rtc_encode(r, tm.tm_min);
	case RTC_HOURS:       return rtc_hours(r, tm.tm_hour);
	case RTC_DAY_OF_WEEK: return rtc_encode(r, tm.tm_wday + 1);
	case RTC_DAY:         return rtc_encode(r, tm.tm_mday);
	case RTC_MONTH:       return rtc_encode(r, tm.tm_mon + 1);
	case RTC_YEAR:        return rtc_encode(r, tm.tm_year % 100);
	case RTC_CENTURY:     return rtc_encode(r, (tm.tm_year + 1900) / 100);
	case RTC_REG_A:       return r->cmos[RTC_REG_A] & 0x7f; /* update never in progress */
	case RTC_REG_C:       return 0;
	case RTC_REG_D:       return REG_D_VALID;
	default:              return r->cmos[idx];
	}
}

static void rtc_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct rtc *r = opaque;

	if (len != 1)
		return;
	pthread_mutex_lock(&r->lock);
	if (offset == 0 && is_write)
		r->index = data[0] & 0x7f;      /* bit 7 is the NMI mask */
	else if (offset == 0)
		data[0] = 0xff;
	else if (is_write && r->index >= RTC_REG_A && r->index != RTC_REG_C && r->index != RTC_REG_D)
		r->cmos[r->index] = data[0];    /* setting the clock itself is ignored */
	else if (!is_write)
		data[0] = rtc_read_reg(r, r->index);
	pthread_mutex_unlock(&r->lock);
}

struct rtc *rtc_create(struct vm *vm)
{
	struct rtc *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	pthread_mutex_init(&r->lock, NULL);
	r->cmos[RTC_REG_A] = 0x26;      /* 32.768 kHz time base, 1024 Hz rate */
	r->cmos[RTC_REG_B] = REG_B_24H;
	if (io_bus_register(&vm->pio, PORT_RTC_INDEX, 2, rtc_io, r) < 0) {
		rtc_destroy(r);
		return NULL;
	}
	return r;
}

/* The index register and the CMOS bytes; the clock is the host's, read live. */
void rtc_save(struct rtc *r, struct state_writer *w)
{
	pthread_mutex_lock(&r->lock);
	state_node_begin(w, "rtc", RTC_STATE_VERSION);
	state_put_u32(w, "index", r->index);
	state_put_bytes(w, "cmos", r->cmos, CMOS_SIZE);
	state_node_end(w);
	pthread_mutex_unlock(&r->lock);
}

int rtc_load(struct rtc *r, const struct state_reader *parent)
{
	uint8_t cmos[CMOS_SIZE];
	struct state_reader n;
	uint32_t index;

	if (!state_node_exists(parent, "rtc"))  /* saved before it had state */
		return 0;
	if (state_node_open(parent, "rtc", &n) < 0 || state_check_version(&n, RTC_STATE_VERSION) < 0 ||
	    state_get_u32(&n, "index", &index) < 0 || state_get_bytes(&n, "cmos", cmos, CMOS_SIZE) < 0)
		return -1;
	if (index >= CMOS_SIZE) {
		pr_err("device state: %s/index = %u is out of range", n.path, index);
		return -1;
	}
	pthread_mutex_lock(&r->lock);
	r->index = (uint8_t)index;
	memcpy(r->cmos, cmos, CMOS_SIZE);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

void rtc_destroy(struct rtc *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r);
}
