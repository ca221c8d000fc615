/* SPDX-License-Identifier: MIT */
/*
 * virtio-net on a tap device opened with IFF_VNET_HDR (12-byte header, as
 * VIRTIO_F_VERSION_1 requires), with the checksum/TSO offloads the guest
 * negotiates passed to the tap. Runs on the main event loop: tap I/O is
 * non-blocking. The tap must already exist (`ip tuntap add NAME mode tap`):
 * minivmm never creates host interfaces.
 */
#ifndef DEVICES_VIRTIO_NET_H
#define DEVICES_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>

struct vm;

struct net_config {
	const char *tap;
	uint8_t mac[6];
	bool mac_set;
};

/* Parse "tap=NAME[,mac=MAC]" (the --net argument); -1 on error. */
int net_config_parse(char *arg, struct net_config *cfg);
int virtio_net_create(struct vm *vm, const struct net_config *cfg);

#endif
