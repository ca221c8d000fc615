// SPDX-License-Identifier: MIT
/*
 * Postcopy, the source: resuming over a new link after a broken one
 * (`migrate` with resume, `--resume`).
 *
 * The VM stayed frozen with the pages the destination lacked. We connect to
 * the destination's migrate-recover address, name the session of the
 * switch, and take the destination's own list of what it still lacks in
 * place of ours (a page we sent may have been lost with the link); then
 * serve as after the switch. A failure leaves everything as it was:
 * postcopy-paused, every page kept.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migration/postcopy_src.h"
#include "migration/ram_file.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define PAGE GUEST_PAGE_SIZE

/* The destination's list of pages it still lacks, into bits. */
static int take_dst_list(struct sender *s, uint64_t **bits, const struct record *rec)
{
	struct guest_mem *mem = &s->vm->mem;
	uint64_t pages = mem->ram_size / PAGE, words = (pages + 63) / 64, set = 0;
	struct postcopy_switch sw;
	const uint64_t *map;

	if (rec->type != REC_POSTCOPY || rec->length != sizeof(sw) + words * 8) {
		pr_err("migration: resume: the destination answered with a %s record of %llu bytes, "
		       "not its page list", record_type_name(rec->type),
		       (unsigned long long)rec->length);
		return -1;
	}
	memcpy(&sw, rec->payload, sizeof(sw));
	map = (const uint64_t *)((const uint8_t *)rec->payload + sizeof(sw));
	if (sw.pages != pages || sw.session != s->m->pc_session) {
		pr_err("migration: resume: the destination's page list is not for this migration");
		return -1;
	}
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		uint64_t base = ram_region_offset(mem, i) / PAGE, n = mem->regions[i].size / PAGE;

		memset(bits[i], 0, (n + 63) / 64 * 8);
		for (uint64_t p = 0; p < n; p++)
			if (map[(base + p) / 64] & (1ULL << ((base + p) % 64))) {
				bits[i][p / 64] |= 1ULL << (p % 64);
				set++;
			}
	}
	pr_info("migration: resume: the destination still lacks %llu pages",
		(unsigned long long)set);
	return 0;
}

/* Header, the session, then the destination's answer. */
static int resume_handshake(struct sender *s)
{
	struct postcopy_resume r = { .session = s->m->pc_session };
	struct stream_header h;
	struct record rec;
	int ret;

	stream_header_init(&h, 0);
	if (record_write(&s->c, REC_HEADER, 0, &h, sizeof(h)) < 0 ||
	    record_write(&s->c, REC_RESUME, 0, &r, sizeof(r)) < 0 ||
	    record_read(&s->ret, &rec, 0) < 0)
		return -1;
	if (rec.type == REC_REPLY) {
		char msg[256];

		pr_err("migration: resume: the destination refused: %s",
		       stream_reply_text(&rec, msg, sizeof(msg)));
		record_free(&rec);
		return -1;
	}
	ret = take_dst_list(s, s->m->pc_bits, &rec);
	record_free(&rec);
	return ret;
}

int postcopy_resume(struct migration *m, const struct mig_uri *u)
{
	struct sender *s = calloc(1, sizeof(*s));
	int ret = -1;

	if (!s || sender_init(s, m) < 0)
		goto out;
	migration_set_status(m, MIG_POSTCOPY_RECOVER);
	m->postcopy = true;
	if (sender_connect(s, u) < 0 || resume_handshake(s) < 0) {
		migration_error(m, "postcopy paused: the resume over %s failed; this VM keeps the "
				"pages the destination lacks, paused", m->uri);
		migration_set_status(m, MIG_POSTCOPY_PAUSED);
		goto out;
	}
	pr_info("migration: postcopy resumed over %s", m->uri);
	ret = postcopy_serve(s, m->pc_bits);
	if (ret == 0) {
		page_bits_free(m->pc_bits);
		m->pc_bits = NULL;
	}
out:
	if (s && s->c.fd >= 0)
		close(s->c.fd);
	if (s)
		sender_free(s);
	free(s);
	return ret;
}
