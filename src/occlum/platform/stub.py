"""The loader stub: the only program the host kernel ever executes for the LibOS.

The kernel's ``execve`` resolves ``PT_INTERP`` and every path in the *host* mount namespace, so
the LibOS loads programs itself. The kernel executes this tiny static ELF instead; its code asks
the supervisor what to do with one trapped "stub" system call, runs the batch of system calls
the supervisor wrote into its command buffer (mmap the program and its interpreter, mprotect,
close, plus a memset pseudo-op for ``.bss``), and then jumps to the program's entry with the
stack pointer the supervisor chose. On a failed command it traps again so the supervisor can
read the results and report.

The machine code below was assembled from the listing in the comments (GNU as, Intel syntax);
it is written out as bytes because no Python library assembles x86-64 and a toolchain at run time
would be a heavy dependency for 204 bytes.

Command buffer layout (little-endian u64 words), at ``BUFFER_ADDR``:
  [0] unused  [1] entry rip (0: trap again)  [2] entry rsp  [3..7] unused
  from byte 64: commands of 8 words: nr, a1..a6, result (written by the stub).
  nr == -1 is memset(a1=dst, a2=byte, a3=len).
"""

from __future__ import annotations

import struct

STUB_NR = 0x1FFF  # the stub's private system call number, served only for processes in exec
STUB_BASE = 0x6F00_0000_0000
CODE_OFFSET = 0x80
ENTRY = STUB_BASE + CODE_OFFSET
BUFFER_ADDR = STUB_BASE + 0x1000
BUFFER_SIZE = 0x20000
COMMANDS_OFFSET = 64
COMMAND_SIZE = 64
MAX_COMMANDS = (BUFFER_SIZE - COMMANDS_OFFSET) // COMMAND_SIZE
MEMSET = -1

# _start:   mov r15, rsp ; lea rbx, [rip + BUFFER] (displacement patched below)
# again:    mov eax, STUB_NR ; mov rdi, rbx ; mov rsi, r15 ; syscall
#           test rax, rax ; js fatal ; mov r13, rax ; lea r12, [rbx+64]
# next:     test r13, r13 ; jz finished ; mov rax, [r12] ; cmp rax, -1 ; je do_memset
#           mov rdi..r9, [r12+8..48] ; syscall ; mov [r12+56], rax
#           cmp rax, -4095 ; jae again
# step:     add r12, 64 ; dec r13 ; jmp next
# do_memset: mov rdi, [r12+8] ; mov rax, [r12+16] ; mov rcx, [r12+24] ; rep stosb
#           mov qword [r12+56], 0 ; jmp step
# finished: mov r11, [rbx+8] ; test r11, r11 ; jz again ; mov rsp, [rbx+16]
#           xor every general register but r11 ; jmp r11
# fatal:    mov edi, 127 ; mov eax, 231 (exit_group) ; syscall ; hlt
_CODE_HEX = (
    "4989e7488d1d00000000b8ff1f00004889df4c89fe0f054885c00f889f0000004989c54c8d63404d85ed745c"
    "498b04244883f8ff7436498b7c2408498b742410498b5424184d8b5424204d8b4424284d8b4c24300f0549"
    "89442438483d01f0ffff73a74983c44049ffcdebbb498b7c2408498b442410498b4c2418f3aa49c7442438"
    "00000000ebdb4c8b5b084d85db0f8475ffffff488b631031c031db31c931d231f631ff31ed4531c04531c9"
    "4531d24531e44531ed4531f64531ff41ffe3bf7f000000b8e70000000f05f4"
)
_LEA_DISP_AT = 6  # the rel32 of "lea rbx, [rip+disp]"; rip after it is code + 10


def _code() -> bytes:
    code = bytearray(bytes.fromhex(_CODE_HEX))
    disp = BUFFER_ADDR - (ENTRY + 10)
    code[_LEA_DISP_AT : _LEA_DISP_AT + 4] = struct.pack("<i", disp)
    struct.pack_into("<I", code, 11, STUB_NR)  # mov eax, imm32
    return bytes(code)


def build_stub() -> bytes:
    """The stub as a static ET_EXEC ELF with one RWX PT_LOAD covering code and buffer."""
    code = _code()
    filesz = CODE_OFFSET + len(code)
    memsz = (BUFFER_ADDR - STUB_BASE) + BUFFER_SIZE
    ehdr = struct.pack(
        "<16sHHIQQQIHHHHHH",
        b"\x7fELF\x02\x01\x01" + b"\0" * 9,
        2,  # ET_EXEC
        62,  # EM_X86_64
        1,
        ENTRY,
        64,  # e_phoff
        0,
        0,
        64,
        56,
        1,
        64,
        0,
        0,
    )
    phdr = struct.pack("<IIQQQQQQ", 1, 7, 0, STUB_BASE, STUB_BASE, filesz, memsz, 0x1000)
    image = ehdr + phdr
    image += b"\0" * (CODE_OFFSET - len(image))
    return image + code
