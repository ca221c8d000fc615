# SPDX-License-Identifier: MIT
# Test guest: a freestanding x86-64 ELF with a PVH note, linked at 1 MiB.
# Included by the top-level Makefile, which defines GUEST_ELF and BUILD.
GUEST_DIR     := tests/guest
GUEST_OBJDIR  := $(BUILD)/guest
GUEST_SRC     := $(GUEST_DIR)/boot.S $(wildcard $(GUEST_DIR)/*.c)
GUEST_OBJ     := $(patsubst $(GUEST_DIR)/%,$(GUEST_OBJDIR)/%.o,$(GUEST_SRC))
GUEST_CFLAGS  := -std=gnu11 -O2 -Wall -Wextra -Werror -ffreestanding -nostdlib \
		 -fno-pic -fno-pie -fno-stack-protector -mno-red-zone \
		 -mgeneral-regs-only -fno-asynchronous-unwind-tables \
		 -fno-tree-loop-distribute-patterns -MMD -MP -I$(GUEST_DIR)
GUEST_LDFLAGS := -nostdlib -static -no-pie -Wl,-T,$(GUEST_DIR)/guest.ld \
		 -Wl,--build-id=none -Wl,-z,max-page-size=4096 \
		 $(shell $(CC) -Wl,--no-warn-rwx-segments -Wl,--version >/dev/null 2>&1 && \
			 echo -Wl,--no-warn-rwx-segments)

$(GUEST_ELF): $(GUEST_OBJ) $(GUEST_DIR)/guest.ld
	$(CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -o $@ $(GUEST_OBJ)

$(GUEST_OBJDIR)/%.c.o: $(GUEST_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -c -o $@ $<

$(GUEST_OBJDIR)/%.S.o: $(GUEST_DIR)/%.S
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -c -o $@ $<
