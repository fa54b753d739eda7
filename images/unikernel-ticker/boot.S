/* Multiboot v1 entry: QEMU's -kernel loader jumps here in 32-bit protected mode, paging off. */
        .set MB_MAGIC, 0x1BADB002
        .set MB_FLAGS, 0x00000003       /* page-aligned modules, memory info */

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

        .section .rodata
        .align 8
gdt:    .quad 0                         /* null */
        .quad 0x00CF9A000000FFFF        /* 0x08: flat 4 GiB code, ring 0 */
        .quad 0x00CF92000000FFFF        /* 0x10: flat 4 GiB data, ring 0 */
gdt_end:
gdt_descriptor:
        .word gdt_end - gdt - 1
        .long gdt

        .section .bss
        .align 16
stack_bottom:
        .skip 16384
stack_top:

        .section .text
        .global _start
_start:
        cli
        /* The loader does not promise our GDT's selectors, nor zeroed memory after a reset. */
        lgdt gdt_descriptor
        ljmp $0x08, $1f
1:      mov $0x10, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %fs
        mov %ax, %gs
        mov %ax, %ss
        cld
        mov $__bss_start, %edi
        mov $__bss_end, %ecx
        sub %edi, %ecx
        shr $2, %ecx
        xor %eax, %eax
        rep stosl
        mov $stack_top, %esp
        call kernel_main
2:      cli
        hlt
        jmp 2b

/* CPU exceptions 0-31: one 8-byte stub each (kernel.c indexes them), all ending in fault(). */
        .global fault_stubs
        .align 8
fault_stubs:
        .set vector, 0
        .rept 32
        .align 8
        push $vector
        jmp fault_common
        .set vector, vector + 1
        .endr

fault_common:
        call fault                      /* argument: the vector pushed by the stub; never returns */

/* IRQ 0 (PIT), remapped to vector 32. */
        .global timer_entry
timer_entry:
        pusha
        cld
        call timer_interrupt
        popa
        iret
