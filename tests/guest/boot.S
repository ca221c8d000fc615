/* SPDX-License-Identifier: MIT */
/*
 * CPL0 part of the test guest: everything that must run in kernel mode, and
 * nothing else. Under KVM on PVM every instruction here is emulated (~1 us
 * each), so the page tables, GDT and TSS descriptors are built by the
 * assembler, not by loops: the BSP runs 56 instructions from the PVH entry
 * to CPL3, an AP 43 from its SIPI. The rest (ACPI, AP start-up IPIs,
 * console, workloads) happens at CPL3, natively, with IOPL=3; the identity
 * map is user-accessible, so CPL3 reaches the LAPIC and all RAM.
 *
 * The IDT has limit 0: any exception triple-faults, which is also the
 * poweroff of last resort.
 */
#include "guest.h"

#define MSR_EFER                0xc0000080
#define EFER_LME                0x100
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define KVM_FEATURE_CLOCKSOURCE2 (1 << 3)
#define CR0_VAL                 0x80010033      /* PG WP NE ET MP PE */
#define CR4_VAL                 0x620           /* OSXMMEXCPT OSFXSR PAE */
#define RFLAGS_USER             0x3002          /* IOPL=3, IF=0 */
#define PTE_LARGE               0x87            /* P RW US PS */
#define PTE_LARGE_UC            0x9f            /* ... plus PWT PCD, for the MMIO hole */
#define PTE_TABLE               0x07            /* P RW US */
#define TSS_IOMAP               104
#define TSS_LIMIT               (TSS_IOMAP + 8192)  /* last byte: the terminator */

/* ---- PVH note: both minivmm and QEMU read the 32-bit entry from it ---- */
	.section .note.pvh, "a"
	.balign 4
	.long 4                         /* namesz */
	.long 8                         /* descsz: 8 in ELF64, as Linux has it */
	.long 18                        /* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.quad pvh_start

/* ---- TSS (its address is encoded in the descriptors below) and GDT ----
 * The TSS carries a full I/O permission bitmap, all ports allowed. Under
 * PVM, guest user mode runs with the hardware IOPL at 0 whatever the guest
 * sets, every IN/OUT traps, and KVM's emulator then allows it only through
 * this bitmap. Elsewhere IOPL=3 alone would do. */
	.section .boot.tss, "aw"
	.globl tss
tss:
	.fill 102, 1, 0                 /* RSPn/ISTn never read: nothing enters CPL0 */
	.word TSS_IOMAP                 /* I/O map base */
	.fill 8192, 1, 0                /* one bit per port, 0 = allowed */
	.byte 0xff                      /* terminator the CPU reads past the map */

	.section .boot.gdt, "aw"
	.balign 16
gdt:
	.quad 0
	.quad 0x00cf9a000000ffff        /* 0x08 kernel code, 32-bit (unused) */
	.quad 0x00af9a000000ffff        /* 0x10 kernel code, 64-bit */
	.quad 0x00cf92000000ffff        /* 0x18 kernel data */
	.quad 0x00cffa000000ffff        /* 0x20 user code, 32-bit (unused) */
	.quad 0x00cff2000000ffff        /* 0x28 user data */
	.quad 0x00affa000000ffff        /* 0x30 user code, 64-bit */
	.quad 0
	/* 0x40: one TSS descriptor per vCPU (LTR marks its descriptor busy),
	 * all pointing at the same TSS. */
	.rept MAX_CPUS
	.quad TSS_LIMIT | ((TSS_ADDR & 0xffffff) << 16) | (0x89 << 40) | \
	      (((TSS_ADDR >> 24) & 0xff) << 56)
	.quad TSS_ADDR >> 32
	.endr
gdt_end:

gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt
idt_ptr:
	.word 0                         /* limit 0: every exception triple-faults */
	.quad 0

/* ---- Identity page tables, USER-accessible ----
 * PDPT entries 0..PD_GIB-1 point at 2 MiB-page directories (valid on every
 * x86-64 CPU); entries from PD_GIB up are 1 GiB pages, usable only when
 * CPUID says PDPE1GB (the C code clips RAM to PD_GIB GiB otherwise). The
 * GiB at 3 GiB (MMIO hole: LAPIC, IOAPIC, virtio) is uncached. */
	.section .data.pt, "aw"
	.balign 4096
	.globl pml4
pml4:
	.quad pdpt + PTE_TABLE
	.fill 511, 8, 0
pdpt:
	.set i, 0
	.rept PD_GIB
	.quad pd + i * 4096 + PTE_TABLE
	.set i, i + 1
	.endr
	.rept 512 - PD_GIB
	.quad (i << 30) | PTE_LARGE
	.set i, i + 1
	.endr
pd:
	.set i, 0
	.rept 512 * PD_GIB
	.if (i >> 9) == 3
	.quad (i << 21) | PTE_LARGE_UC
	.else
	.quad (i << 21) | PTE_LARGE
	.endif
	.set i, i + 1
	.endr

	.data
	.globl have_kvmclock, have_1g
ap_next:
	.long 1                         /* next AP slot; the BSP is slot 0 */
have_kvmclock:
	.byte 0
have_1g:
	.byte 0

/* Per-vCPU stacks and kvmclock areas: never zeroed, so left out of .bss. */
	.section .noinit, "aw", @nobits
	.balign 4096
	.globl pvclock
pvclock:
	.skip 32 * MAX_CPUS
	.balign 4096
stacks:
	.skip STACK_SIZE * MAX_CPUS

/* ---- BSP: PVH entry. 32-bit protected mode, paging off, EBX = start info */
	.section .text.boot, "ax"
	.code32
	.globl pvh_start
pvh_start:
	mov %ebx, %esi                  /* hvm_start_info: 2nd argument of bsp_pvh */
	mov $pml4, %eax
	mov %eax, %cr3
	mov $CR4_VAL, %eax
	mov %eax, %cr4
	mov $MSR_EFER, %ecx
	mov $EFER_LME, %eax
	xor %edx, %edx
	wrmsr
	mov $CR0_VAL, %eax
	mov %eax, %cr0                  /* long mode (compatibility) */
	lgdt gdt_ptr                    /* before any segment register is loaded */
	ljmp $SEL_KCODE, $bsp64

	.code64
bsp64:
	lea bsp_pvh(%rip), %r12
	jmp bsp_common

/* ---- BSP: 64-bit Linux boot protocol entry (the ELF entry point, used by
 * minivmm --boot linux64). Long mode on the VMM's page tables, CS 64-bit,
 * RSI = boot_params. The VMM's CS stays loaded until the drop to CPL3. */
	.globl linux64_start
linux64_start:
	mov $pml4, %eax
	mov %rax, %cr3
	lgdt gdt_ptr(%rip)
	lea bsp_linux64(%rip), %r12

/* R12 = CPL3 entry, RSI = its argument. CPUID is asked here, not at CPL3:
 * under PVM, CPL3 runs natively and CPUID there shows the host's CPU, not
 * the one KVM gives this guest. */
bsp_common:
	mov $0x80000001, %eax
	cpuid
	bt $26, %edx                    /* PDPE1GB: 1 GiB pages above PD_GIB */
	setc have_1g(%rip)
	/* kvmclock if the KVM leaves say so; APs just read the flag */
	mov $0x40000000, %eax
	cpuid
	cmp $0x4b4d564b, %ebx           /* "KVMK" */
	jne 1f
	mov $0x40000001, %eax
	cpuid
	test $KVM_FEATURE_CLOCKSOURCE2, %al
	jz 1f
	movb $1, have_kvmclock(%rip)
1:	xor %edi, %edi                  /* slot 0 */
	jmp cpu64

/* ---- AP: arrives here from the trampoline in 64-bit mode ---- */
ap64:
	mov $1, %edi
	lock xadd %edi, ap_next(%rip)
	cmp $MAX_CPUS, %edi
	jae park
	lea ap_main(%rip), %r12
	/* fall through */

/* Common tail: EDI = slot, RSI = argument, R12 = CPL3 entry point. */
cpu64:
	mov %edi, %eax
	inc %eax
	shl $STACK_SHIFT, %eax
	lea stacks(%rip), %rsp
	add %rax, %rsp
	mov %edi, %eax
	shl $4, %eax
	add $SEL_TSS0, %eax
	ltr %ax
	lidt idt_ptr(%rip)
	cmpb $0, have_kvmclock(%rip)
	je 2f
	mov %edi, %eax
	shl $5, %eax
	lea pvclock + 1(%rip), %rdx     /* bit 0: enable */
	add %rdx, %rax
	xor %edx, %edx                  /* below 4 GiB */
	mov $MSR_KVM_SYSTEM_TIME_NEW, %ecx
	wrmsr
2:	lea -8(%rsp), %rax              /* as after a call: RSP+8 16-byte aligned */
	push $SEL_UDATA
	push %rax
	push $RFLAGS_USER
	push $SEL_UCODE
	push %r12
	iretq                           /* the one and only CPL0 -> CPL3 switch */

park:					/* more vCPUs than MAX_CPUS */
	cli
	hlt
	jmp park

/* ---- AP trampoline: copied to TRAMP_ADDR by the BSP; the SIPI starts it
 * in real mode at TRAMP_ADDR:0. Straight to long mode: PE and PG together. */
	.section .rodata.tramp, "a"
	.code16
	.globl tramp_start, tramp_end
tramp_start:
	mov %cs:(tramp_cr3 - tramp_start), %eax
	mov %eax, %cr3
	mov $CR4_VAL, %eax
	mov %eax, %cr4
	mov $MSR_EFER, %ecx
	mov $EFER_LME, %eax
	xor %edx, %edx
	wrmsr
	lgdtl %cs:(tramp_gdtr - tramp_start)
	mov $CR0_VAL, %eax
	mov %eax, %cr0
	ljmpl $SEL_KCODE, $ap64
	.balign 8
tramp_gdtr:
	.word gdt_end - gdt - 1
	.long gdt
tramp_cr3:
	.long pml4
tramp_end:
	.code64
	.section .note.GNU-stack, "", @progbits
