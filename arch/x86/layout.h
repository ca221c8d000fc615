/* SPDX-License-Identifier: MIT */
/*
 * Every fixed guest-physical address and I/O port minivmm uses on x86, in one
 * place, with the reason for each. Guest-visible: changing any of these
 * changes what a guest (and a saved snapshot) sees.
 */
#ifndef ARCH_X86_LAYOUT_H
#define ARCH_X86_LAYOUT_H

#define KiB (1ULL << 10)
#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

/* --- Low memory, written by the VMM at boot ------------------------------ */
#define LAYOUT_GDT            0x0500ULL   /* boot GDT: null, -, code64 (0x10), data (0x18), code32 (0x08) */
#define LAYOUT_PVH_START_INFO 0x6000ULL   /* struct hvm_start_info + its memmap right after */
#define LAYOUT_ZERO_PAGE      0x7000ULL   /* Linux boot_params ("zero page") */
#define LAYOUT_PML4           0x9000ULL   /* linux64 identity page tables: PML4, PDPT, */
#define LAYOUT_PDPT           0xA000ULL   /*   then 4 PDs of 2 MiB pages covering 0-4 GiB */
#define LAYOUT_PD             0xB000ULL
#define LAYOUT_CMDLINE        0x20000ULL  /* kernel command line */
#define LAYOUT_CMDLINE_MAX    0x10000ULL  /* 64 KiB incl. NUL */

/* --- Reserved legacy area: EBDA, VGA hole, BIOS ROM --------------------- */
#define LAYOUT_EBDA_START     0x9FC00ULL  /* reserved in e820 up to 1 MiB */
#define LAYOUT_HIGH_MEM_START 0x100000ULL /* 1 MiB: first byte of ordinary RAM above */
#define LAYOUT_ACPI_START     0xE0000ULL  /* RSDP first (legacy scan area), then the */
#define LAYOUT_ACPI_SIZE      0x1F000ULL  /*   other ACPI tables, inside 0xE0000-0xFEFFF */
/*
 * The 16-byte VM generation ID (DSDT device VGEN, ADDR). Reserved memory the
 * OS never allocates, in its own page so an OS can map it alone. The address
 * a machine uses is in its machine description: a restore writes the new ID
 * where the snapshot's own ACPI tables point, whatever this constant becomes.
 */
#define LAYOUT_VMGENID        0xFF000ULL
/*
 * The reset vector, F000:FFF0: where a CPU starts after reset and where
 * Linux jumps to reboot through "the BIOS" (machine_real_restart). On a
 * hardware-reduced ACPI machine without EFI that is Linux's default way to
 * reboot (and to act on panic=N), not the keyboard controller. There is no
 * BIOS here: a 16-bit stub pulses the i8042 reset line instead, which
 * minivmm treats as a reboot, then halts.
 */
#define LAYOUT_RESET_VECTOR   0xFFFF0ULL

/* --- Kernel and initrd --------------------------------------------------- */
#define LAYOUT_KERNEL_DEFAULT 0x100000ULL /* bzImage protected-mode code, 1 MiB */
#define LAYOUT_INITRD_MAX     0xC0000000ULL /* initrd placed as high as fits below this */

/* --- The 32-bit MMIO hole: [3 GiB, 4 GiB) holds no RAM ------------------ */
#define LAYOUT_MMIO_HOLE      0xC0000000ULL
#define LAYOUT_MMIO_HOLE_END  0x100000000ULL
#define LAYOUT_VIRTIO_MMIO    0xD0000000ULL /* virtio-mmio windows, one per device */
#define LAYOUT_VIRTIO_STRIDE  0x1000ULL
#define LAYOUT_VIRTIO_MAX     32
#define LAYOUT_IOAPIC         0xFEC00000ULL
#define LAYOUT_LAPIC          0xFEE00000ULL
#define LAYOUT_HIGH_RAM       0x100000000ULL /* RAM above the hole continues at 4 GiB */

/* --- Legacy IRQs (IOAPIC pins) ------------------------------------------ */
#define IRQ_I8042_KBD         1
#define IRQ_COM1              4
#define IRQ_RTC               8
#define IRQ_VIRTIO_FIRST      5   /* 5,6,7, then 9..23 skipping 8 */
#define IRQ_GED               3   /* Generic Event Device: "the generation ID changed" */

/* --- I/O ports ----------------------------------------------------------- */
#define PORT_I8042_DATA       0x60
#define PORT_I8042_CMD        0x64
#define PORT_RTC_INDEX        0x70
#define PORT_RTC_DATA         0x71
#define PORT_COM1             0x3F8 /* 8 registers */
/* ACPI hardware-reduced sleep registers (FADT SLEEP_CONTROL/STATUS_REG). */
#define PORT_ACPI_SLEEP_CTL   0x600
#define PORT_ACPI_SLEEP_STS   0x601
#define ACPI_S5_SLP_TYP       5     /* value in the DSDT _S5_ package */
/*
 * Paravirtual sleep port (minivmm only): a 32-bit IN reads PVSLEEP_MAGIC;
 * a 32-bit OUT of N sleeps the calling vCPU's thread for N microseconds
 * (capped at PVSLEEP_MAX_US). Elsewhere the port reads all-ones, and the
 * test guest falls back to spinning.
 */
#define PORT_PVSLEEP          0x610
#define PVSLEEP_MAGIC         0x4D56534CU /* "MVSL" */
#define PVSLEEP_MAX_US        100000U

#endif
