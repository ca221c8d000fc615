# The libFuzzer targets (tests/fuzz/fuzz_*.c: the incoming migration stream,
# the control socket, the machine record, the kernel loaders, the virtqueues,
# the snapshot file, the device state). Included from the top-level Makefile;
# also usable alone:
#   make -f tests/fuzz/fuzz.mk fuzz-short     each target for seconds (make test)
#   make -f tests/fuzz/fuzz.mk fuzz           each target for FUZZ_LONG s (300)
# Needs clang and libFuzzer (Debian: clang-14 libclang-rt-14-dev on bookworm;
# on bullseye/older, libFuzzer ships in the clang-N package itself).
BUILD       ?= build
FUZZ_CC     ?= clang
FUZZ_DIR    := $(BUILD)/fuzz
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
               -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -I.
FUZZ_SRC    := tests/fuzz/fuzz_stream.c migration/stream_rx.c migration/ram_batch.c migration/ram_pipe.c \
               migration/stream.c migration/crc32c.c migration/tls.c migration/ktls.c vmm/guest_mem.c vmm/log.c \
               vmm/failpoint.c vmm/lockdown.c vmm/seccomp.c
FUZZ_LIBS   := -lgnutls -lseccomp -lcap-ng
FUZZ_TIME   ?= 30
# The control socket's request lines (tests/fuzz/fuzz_qmp.c); seeds in
# tests/fuzz/corpus/qmp.
QMP_SRC     := tests/fuzz/fuzz_qmp.c vmm/qmp.c vmm/log.c
QMP_TIME    ?= 15
# The machine record (tests/fuzz/fuzz_machine.c); seeds in tests/fuzz/corpus/machine.
# Only machine_load() is wanted from machine.c: unused sections (machine_save
# and what it calls) are dropped at link time.
MACHINE_SRC := tests/fuzz/fuzz_machine.c migration/machine.c migration/state.c devices/vmgenid.c \
               vmm/guest_mem.c vmm/log.c
MACHINE_TIME ?= 15
# The --kernel loaders (tests/fuzz/fuzz_kernel.c); seeds in tests/fuzz/corpus/kernel.
KERNEL_SRC  := tests/fuzz/fuzz_kernel.c arch/x86/boot.c arch/x86/boot_linux.c \
               arch/x86/boot_pvh.c arch/x86/elf.c arch/x86/e820.c vmm/guest_mem.c vmm/log.c
KERNEL_TIME ?= 15
# The virtqueues a hostile guest lays out, walked bare and by virtio-blk,
# virtio-net and virtio-rng (tests/fuzz/fuzz_virtqueue.c); seeds in
# tests/fuzz/corpus/virtqueue. The blk and net sources come in through
# tests/fuzz/fuzz_devices.h, not this list; blk_io.c's worker (never started
# there) names lockdown_thread(), hence lockdown.c and what it needs.
VQ_SRC      := tests/fuzz/fuzz_virtqueue.c devices/virtqueue.c devices/virtio_mmio.c \
               devices/virtio_mmio_state.c devices/virtio_rng.c migration/state.c \
               vmm/guest_mem.c vmm/io_bus.c vmm/event_loop.c vmm/log.c vmm/lockdown.c \
               vmm/seccomp.c vmm/failpoint.c
VQ_DEPS     := tests/fuzz/fuzz_devices.h tests/fuzz/fuzz_common.h devices/virtio_blk.c devices/blk_io.c devices/virtio_net.c
VQ_LIBS     := -lfdt -lseccomp -lcap-ng
VQ_TIME     ?= 10
# What reads a device-state record (the FDT) besides the devices' own
# files: the VM and vCPU nodes, the legacy devices, the virtio transport.
# fuzz_stubs.c stands in for vmm/vm.c (KVM), which nothing here calls.
STATE_LOAD_SRC := migration/vmstate.c migration/state.c arch/x86/vcpu_state.c arch/x86/cpuid.c \
               devices/serial.c devices/rtc.c devices/i8042.c devices/virtio_mmio.c \
               devices/virtio_mmio_state.c devices/virtqueue.c vmm/guest_mem.c vmm/io_bus.c \
               vmm/event_loop.c vmm/log.c vmm/failpoint.c tests/fuzz/fuzz_stubs.c
# vcpu_state.c puts a struct kvm_msrs before an entry (a GNU extension gcc takes).
STATE_CFLAGS := -ffunction-sections -Wl,--gc-sections -Wno-gnu-variable-sized-type-not-at-end
# The snapshot file reader (tests/fuzz/fuzz_snapshot.c); seeds in tests/fuzz/corpus/snapshot.
SNAP_SRC    := tests/fuzz/fuzz_snapshot.c migration/snapshot_load.c migration/stream.c \
               migration/crc32c.c migration/ram_file.c migration/machine.c devices/vmgenid.c \
               migration/tls.c migration/ktls.c $(STATE_LOAD_SRC)
SNAP_TIME   ?= 10
# The device-state record through every loader that runs without KVM, the
# vCPU and VM nodes against a fake KVM (tests/fuzz/fuzz_state.c: its
# ioctls, through -Wl,--wrap=ioctl); seeds in tests/fuzz/corpus/state.
STATE_SRC   := tests/fuzz/fuzz_state.c devices/virtio_rng.c vmm/lockdown.c vmm/seccomp.c \
               $(STATE_LOAD_SRC)
STATE_TIME  ?= 10

# A longer run: every target for FUZZ_LONG seconds, one after the other.
FUZZ_LONG   ?= 300

.PHONY: fuzz fuzz-build fuzz-short
fuzz: fuzz-build
	$(MAKE) -f tests/fuzz/fuzz.mk fuzz-short BUILD=$(BUILD) FUZZ_TIME=$(FUZZ_LONG) \
	  QMP_TIME=$(FUZZ_LONG) MACHINE_TIME=$(FUZZ_LONG) KERNEL_TIME=$(FUZZ_LONG) \
	  VQ_TIME=$(FUZZ_LONG) SNAP_TIME=$(FUZZ_LONG) STATE_TIME=$(FUZZ_LONG)

fuzz-build: $(FUZZ_DIR)/fuzz_stream $(FUZZ_DIR)/seeds/.done $(FUZZ_DIR)/fuzz_qmp $(FUZZ_DIR)/fuzz_machine \
      $(FUZZ_DIR)/fuzz_kernel $(FUZZ_DIR)/fuzz_virtqueue $(FUZZ_DIR)/fuzz_snapshot $(FUZZ_DIR)/fuzz_state

$(FUZZ_DIR)/fuzz_virtqueue: $(VQ_SRC) $(VQ_DEPS) $(wildcard devices/*.h migration/*.h vmm/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -ffunction-sections -Wl,--gc-sections -o $@ $(VQ_SRC) $(VQ_LIBS)

$(FUZZ_DIR)/fuzz_snapshot: $(SNAP_SRC) tests/fuzz/fuzz_common.h $(wildcard arch/x86/*.h devices/*.h migration/*.h vmm/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(STATE_CFLAGS) -o $@ $(SNAP_SRC) -lfdt -lgnutls

$(FUZZ_DIR)/fuzz_state: $(STATE_SRC) $(VQ_DEPS) $(wildcard arch/x86/*.h devices/*.h migration/*.h vmm/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(STATE_CFLAGS) -Wl,--wrap=ioctl -o $@ $(STATE_SRC) \
	  -lfdt -lseccomp -lcap-ng

$(FUZZ_DIR)/fuzz_kernel: $(KERNEL_SRC) $(wildcard arch/x86/*.h vmm/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -ffunction-sections -Wl,--gc-sections -o $@ $(KERNEL_SRC)

$(FUZZ_DIR)/fuzz_machine: $(MACHINE_SRC) $(wildcard migration/*.h vmm/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -ffunction-sections -Wl,--gc-sections -o $@ $(MACHINE_SRC) -lfdt

$(FUZZ_DIR)/fuzz_qmp: $(QMP_SRC) vmm/qmp.h vmm/log.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(QMP_SRC) -ljson-c

$(FUZZ_DIR)/fuzz_stream: $(FUZZ_SRC) $(wildcard migration/*.h vmm/*.h) tests/fuzz/fuzz_common.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FUZZ_SRC) $(FUZZ_LIBS)

$(FUZZ_DIR)/seeds/.done: tests/fuzz/gen_seeds.py
	python3 tests/fuzz/gen_seeds.py $(FUZZ_DIR)/seeds
	@touch $@

# The corpus grows in $(FUZZ_DIR)/corpus across runs; crashes land in $(FUZZ_DIR)/.
# -timeout=30 (virtqueue, snapshot, state): their slowest inputs take
# milliseconds; one that takes 30 s is a hang (as libfdt's was, see
# migration/state.c), reported as one instead of after libFuzzer's 20 min.
# -close_fd_mask=2: the target's one-line errors would drown libFuzzer's own
# output (which, like sanitizer reports, still reaches the terminal).
fuzz-short: fuzz-build
	@mkdir -p $(FUZZ_DIR)/corpus
	$(FUZZ_DIR)/fuzz_stream -max_total_time=$(FUZZ_TIME) -max_len=65536 -close_fd_mask=2 \
	  -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus $(FUZZ_DIR)/seeds
	@mkdir -p $(FUZZ_DIR)/corpus-qmp
	$(FUZZ_DIR)/fuzz_qmp -max_total_time=$(QMP_TIME) -max_len=4096 -close_fd_mask=2 \
	  -artifact_prefix=$(FUZZ_DIR)/qmp- $(FUZZ_DIR)/corpus-qmp tests/fuzz/corpus/qmp
	@mkdir -p $(FUZZ_DIR)/corpus-machine
	$(FUZZ_DIR)/fuzz_machine -max_total_time=$(MACHINE_TIME) -max_len=8192 -close_fd_mask=2 \
	  -artifact_prefix=$(FUZZ_DIR)/machine- $(FUZZ_DIR)/corpus-machine tests/fuzz/corpus/machine
	@mkdir -p $(FUZZ_DIR)/corpus-kernel
	$(FUZZ_DIR)/fuzz_kernel -max_total_time=$(KERNEL_TIME) -max_len=20000 -close_fd_mask=2 \
	  -rss_limit_mb=4096 -artifact_prefix=$(FUZZ_DIR)/kernel- $(FUZZ_DIR)/corpus-kernel \
	  tests/fuzz/corpus/kernel
	@mkdir -p $(FUZZ_DIR)/corpus-virtqueue
	$(FUZZ_DIR)/fuzz_virtqueue -max_total_time=$(VQ_TIME) -timeout=30 -max_len=8192 -close_fd_mask=2 \
	  -artifact_prefix=$(FUZZ_DIR)/virtqueue- $(FUZZ_DIR)/corpus-virtqueue tests/fuzz/corpus/virtqueue
	@mkdir -p $(FUZZ_DIR)/corpus-snapshot
	$(FUZZ_DIR)/fuzz_snapshot -max_total_time=$(SNAP_TIME) -timeout=30 -max_len=16384 -close_fd_mask=2 \
	  -artifact_prefix=$(FUZZ_DIR)/snapshot- $(FUZZ_DIR)/corpus-snapshot tests/fuzz/corpus/snapshot
	@mkdir -p $(FUZZ_DIR)/corpus-state
	$(FUZZ_DIR)/fuzz_state -max_total_time=$(STATE_TIME) -timeout=30 -max_len=32768 -close_fd_mask=2 \
	  -artifact_prefix=$(FUZZ_DIR)/state- $(FUZZ_DIR)/corpus-state tests/fuzz/corpus/state
