/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk on a raw image file: read, write, flush (fdatasync), get-id,
 * discard and write-zeroes (both punch holes). Requests are served by one
 * I/O thread per disk, never on the event loop. The image is locked with
 * an OFD lock (shared when read-only) so two VMMs never write one image.
 */
#ifndef DEVICES_VIRTIO_BLK_H
#define DEVICES_VIRTIO_BLK_H

#include <stdbool.h>

struct vm;

struct disk_config {
	const char *path;
	const char *serial;     /* VIRTIO_BLK_T_GET_ID, up to 20 bytes; NULL: none */
	bool readonly;
};

/* Parse "PATH[,readonly][,serial=ID]" (the --disk argument); -1 on error. */
int disk_config_parse(char *arg, struct disk_config *cfg);
/* Open and lock the image and create the device: -1 (message printed). */
int virtio_blk_create(struct vm *vm, const struct disk_config *cfg);

#endif
