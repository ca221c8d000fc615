# Fuzzing the incoming migration stream (tests/fuzz/fuzz_stream.c) with
# libFuzzer. Included from the top-level Makefile; also usable alone:
#   make -f tests/fuzz/fuzz.mk fuzz-short
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
MACHINE_SRC := tests/fuzz/fuzz_machine.c migration/machine.c migration/state.c vmm/guest_mem.c \
               vmm/log.c
MACHINE_TIME ?= 15
# The --kernel loaders (tests/fuzz/fuzz_kernel.c); seeds in tests/fuzz/corpus/kernel.
KERNEL_SRC  := tests/fuzz/fuzz_kernel.c arch/x86/boot.c arch/x86/boot_linux.c \
               arch/x86/boot_pvh.c arch/x86/elf.c arch/x86/e820.c vmm/guest_mem.c vmm/log.c
KERNEL_TIME ?= 15

.PHONY: fuzz fuzz-short
fuzz: $(FUZZ_DIR)/fuzz_stream $(FUZZ_DIR)/seeds/.done $(FUZZ_DIR)/fuzz_qmp $(FUZZ_DIR)/fuzz_machine \
      $(FUZZ_DIR)/fuzz_kernel

$(FUZZ_DIR)/fuzz_kernel: $(KERNEL_SRC) $(wildcard arch/x86/*.h vmm/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -ffunction-sections -Wl,--gc-sections -o $@ $(KERNEL_SRC)

$(FUZZ_DIR)/fuzz_machine: $(MACHINE_SRC) $(wildcard migration/*.h vmm/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -ffunction-sections -Wl,--gc-sections -o $@ $(MACHINE_SRC) -lfdt

$(FUZZ_DIR)/fuzz_qmp: $(QMP_SRC) vmm/qmp.h vmm/log.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(QMP_SRC) -ljson-c

$(FUZZ_DIR)/fuzz_stream: $(FUZZ_SRC) $(wildcard migration/*.h vmm/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FUZZ_SRC) $(FUZZ_LIBS)

$(FUZZ_DIR)/seeds/.done: tests/fuzz/gen_seeds.py
	python3 tests/fuzz/gen_seeds.py $(FUZZ_DIR)/seeds
	@touch $@

# The corpus grows in $(FUZZ_DIR)/corpus across runs; crashes land in $(FUZZ_DIR)/.
# -close_fd_mask=2: the target's one-line errors would drown libFuzzer's own
# output (which, like sanitizer reports, still reaches the terminal).
fuzz-short: fuzz
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
