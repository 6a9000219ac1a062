# The VM lab's HA guest: a boot sector that counts on its own disk.
#
# Once a second it reads the disk's second sector, adds one to the 16-bit counter at its start,
# writes the sector back through the BIOS (int 13h, so SeaBIOS's virtio-blk driver and QEMU's
# block layer with the domain's cache mode), and only after the write returned prints
# "tick N" on COM1 (the serial log libvirt keeps). A tick on the console is therefore a write
# the storage acknowledged, and a guest restarted elsewhere goes on from what the disk holds.
#
# It waits with interrupts on and the CPU halted (the BIOS timer's 18.2 Hz ticks at 0x46c), so
# a nested TCG guest costs its node almost nothing: the point of the lab's HA part is the
# cluster around the VM, not the guest.
#
# Built by the lab (tests/src/vmlab.rs, tick_guest_image): as --32 + ld -Ttext 0x7c00
# --oformat binary; the disk image is this sector, then a zeroed counter sector, padded.

        .code16
        .text
        .globl _start
_start:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     $0x7c00, %sp
        sti
        mov     %dl, drive              # the BIOS boot drive

next:
        mov     $0x0201, %ax            # read one sector
        call    disk
        incw    0x7e00
        mov     $0x0301, %ax            # write it back
        call    disk
        mov     $msg, %si
        call    puts
        mov     0x7e00, %ax
        call    putnum
        mov     $nl, %si
        call    puts
        mov     0x46c, %bx              # one second: 18 BIOS timer ticks
        add     $18, %bx
wait:
        sti
        hlt
        mov     0x46c, %ax
        sub     %bx, %ax
        js      wait
        jmp     next

# AX = int 13h function and count; cylinder 0, head 0, sector 2 (LBA 1) at 0x7e00
disk:
        mov     $0x0002, %cx
        xor     %dh, %dh
        mov     drive, %dl
        mov     $0x7e00, %bx
        int     $0x13
        jc      fail
        ret
fail:
        mov     $err, %si
        call    puts
halt:
        cli
        hlt
        jmp     halt

# SI = NUL-terminated string
puts:
        lodsb
        test    %al, %al
        jz      1f
        call    putc
        jmp     puts
1:      ret

# AL to COM1's data register (QEMU's UART needs no set-up)
putc:
        push    %dx
        mov     $0x3f8, %dx
        out     %al, %dx
        pop     %dx
        ret

# AX in decimal
putnum:
        xor     %cx, %cx
        mov     $10, %bx
1:      xor     %dx, %dx
        div     %bx
        push    %dx
        inc     %cx
        test    %ax, %ax
        jnz     1b
2:      pop     %ax
        add     $'0', %al
        call    putc
        loop    2b
        ret

drive:  .byte   0
msg:    .asciz  "tick "
nl:     .asciz  "\r\n"
err:    .asciz  "disk error\r\n"

        . = _start + 510
        .byte   0x55, 0xaa
