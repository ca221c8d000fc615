/* SPDX-License-Identifier: MIT */
/*
 * CMOS RTC (MC146818) at ports 0x70/0x71: wall-clock time from the host in
 * BCD or binary and 12/24-hour format as register B asks, the rest of the
 * 128-byte CMOS as plain storage. No periodic or alarm interrupts.
 */
#ifndef DEVICES_RTC_H
#define DEVICES_RTC_H

struct vm;
struct rtc;
struct state_writer;
struct state_reader;

struct rtc *rtc_create(struct vm *vm);
void rtc_destroy(struct rtc *rtc);
/* State: the index register and the 128 CMOS bytes, node "rtc" (version 1);
 * a stream without it leaves the CMOS as at power-on. */
void rtc_save(struct rtc *rtc, struct state_writer *w);
int rtc_load(struct rtc *rtc, const struct state_reader *parent);

#endif
