/* SPDX-License-Identifier: MIT */
/*
 * virtio-rng (entropy device, id 4): fills each buffer the driver offers
 * from the host's getrandom(). Runs on the main loop; never blocks.
 */
#ifndef DEVICES_VIRTIO_RNG_H
#define DEVICES_VIRTIO_RNG_H

struct vm;

int virtio_rng_create(struct vm *vm);

#endif
