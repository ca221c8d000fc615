# minivmm build. `make` builds ./minivmm and the test guest; `make test` runs every test.
CC      ?= gcc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -I. -MMD -MP
LDLIBS  += -lfdt -lseccomp -lcap-ng -ljson-c -lgnutls -lpthread

BUILD   := build
VMM_SRC := $(wildcard vmm/*.c arch/x86/*.c devices/*.c migration/*.c)
LIB_SRC := $(filter-out vmm/main.c,$(VMM_SRC))
VMM_OBJ := $(VMM_SRC:%.c=$(BUILD)/%.o)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)

# Unit tests: every tests/unit/test_*.c is one Check binary linked against all
# non-main objects. The sanitizer build lives in its own object tree.
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/unit/%)
SAN       := $(BUILD)/san
SANFLAGS  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SAN_LIB   := $(LIB_SRC:%.c=$(SAN)/%.o)
SAN_BIN   := $(UNIT_SRC:tests/unit/%.c=$(SAN)/unit/%)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck)

GUEST_ELF := tests/guest/guest.elf

.PHONY: all test unit unit-san integration integration-san linux-e2e kvm-tests guest clean
all: minivmm guest $(BUILD)/minivmm-test

minivmm: $(VMM_OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

# The same VMM with failpoints (vmm/failpoint.h): what the tests that arm one
# run. Only failpoint.c differs; ./minivmm has none.
FP_OBJ := $(BUILD)/fp/vmm/failpoint.o
$(BUILD)/minivmm-test: $(filter-out $(BUILD)/vmm/failpoint.o,$(VMM_OBJ)) $(FP_OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(FP_OBJ): vmm/failpoint.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DMINIVMM_FAILPOINTS -c -o $@ $<

# The sanitizer build is a test build: failpoints on.
$(SAN)/vmm/failpoint.o: CFLAGS += -DMINIVMM_FAILPOINTS

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(SAN)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SANFLAGS) -c -o $@ $<

$(BUILD)/unit/%: $(BUILD)/tests/unit/%.o $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(CHECK_LIBS) $(LDLIBS)

$(SAN)/unit/%: $(SAN)/tests/unit/%.o $(SAN_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SANFLAGS) -o $@ $^ $(LDFLAGS) $(CHECK_LIBS) $(LDLIBS)

guest: $(GUEST_ELF)
include tests/guest/guest.mk

unit: $(UNIT_BIN)
	@set -e; for t in $^; do echo "== $$t"; CK_FORK=yes $$t; done

unit-san: $(SAN_BIN)
	@set -e; for t in $^; do echo "== $$t (asan+ubsan)"; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 CK_FORK=no $$t; done

# The KVM suites (tests/run-kvm says what each runs) need /dev/kvm here;
# `make test` runs them wherever this machine can (scripts/kvm-tests: natively,
# or in the nested test VM of scripts/nested).
integration: minivmm guest $(BUILD)/minivmm-test
	tests/run-kvm integration

# The migration paths (threads, sockets, the applier, the harvester) that only
# real KVM reaches, once more under ASan+UBSan: any report aborts the VMM.
SAN_VMM := $(BUILD)/minivmm-san
$(SAN_VMM): $(VMM_SRC:%.c=$(SAN)/%.o)
	$(CC) $(CFLAGS) $(SANFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

integration-san: $(SAN_VMM) guest
	tests/run-kvm integration-san

# Debian's Linux end to end, in the nested test VM (Linux boots fully there).
linux-e2e: minivmm guest
	tests/linux/build >/dev/null
	tests/linux/build-clone >/dev/null
	scripts/nested tests/run-kvm linux

kvm-tests: minivmm guest $(BUILD)/minivmm-test $(SAN_VMM)
	scripts/kvm-tests

test: unit unit-san kvm-tests fuzz-short

clean:
	rm -rf $(BUILD) minivmm $(GUEST_ELF)

include tests/fuzz/fuzz.mk

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
