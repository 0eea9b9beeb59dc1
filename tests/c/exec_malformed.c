/* execve of malformed ELF files whose header fields point anywhere: the errno Linux gives
 * (ENOEXEC for the program header table, and for the interpreter path EINVAL, EIO or ENOEXEC
 * as Linux reads it), never a failure of the loader itself. */
#include "common.h"
#include <elf.h>
#include <stdint.h>

extern char **environ;

/* A small ELF executable: the header, a PT_INTERP and a PT_LOAD program header, a path. */
static int write_elf(const char *name, uint64_t phoff, uint64_t interp_off, uint64_t interp_size,
                     int nul)
{
    unsigned char buf[512];
    memset(buf, 0, sizeof buf);
    Elf64_Ehdr *eh = (Elf64_Ehdr *)buf;
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_type = ET_EXEC;
    eh->e_machine = EM_X86_64;
    eh->e_version = EV_CURRENT;
    eh->e_entry = 0x400000 + 400;
    eh->e_phoff = phoff;
    eh->e_ehsize = sizeof *eh;
    eh->e_phentsize = sizeof(Elf64_Phdr);
    eh->e_phnum = 2;
    Elf64_Phdr *ph = (Elf64_Phdr *)(buf + sizeof *eh);
    ph[0].p_type = PT_INTERP;
    ph[0].p_flags = PF_R;
    ph[0].p_offset = interp_off;
    ph[0].p_filesz = ph[0].p_memsz = interp_size;
    ph[1].p_type = PT_LOAD;
    ph[1].p_flags = PF_R | PF_X;
    ph[1].p_vaddr = ph[1].p_paddr = 0x400000;
    ph[1].p_filesz = ph[1].p_memsz = sizeof buf;
    ph[1].p_align = 4096;
    memcpy(buf + 300, "/lib/no-such-ld.so", nul ? 19 : 18);
    buf[400] = 0xf4; /* hlt: never reached */
    int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, buf, sizeof buf);
    close(fd);
    return n == (ssize_t)sizeof buf ? 0 : -1;
}


#define TRY(label, E, ...)                                                           \
    do {                                                                             \
        CHECK(write_elf("prog", __VA_ARGS__) == 0);                                  \
        char *_args[] = {"./prog", NULL};                                            \
        errno = 0;                                                                   \
        int _r = execve("./prog", _args, environ), _e = errno;                       \
        printf("%s: %s\n", label, _r < 0 ? errname(_e) : "ok");                      \
        if (_r >= 0 || _e != (E))                                                    \
            t_fail(__FILE__, __LINE__, "%s: expected %s", label, errname(E));        \
    } while (0)

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    /* the program header table: an offset up to 2^64 - 1, or past the end of the file */
    TRY("e_phoff huge", ENOEXEC, 0x7fffffffffff0000ULL, 300, 19, 1);
    TRY("e_phoff negative", ENOEXEC, 0xffffffffffff0000ULL, 300, 19, 1);
    TRY("e_phoff past the end", ENOEXEC, 4096, 300, 19, 1);
    TRY("e_phoff cuts the table", ENOEXEC, 512 - 60, 300, 19, 1);
    /* the interpreter path */
    TRY("interp offset past the end", EIO, 64, 100000, 19, 1);
    TRY("interp offset negative", EINVAL, 64, 0xffffffffffff0000ULL, 19, 1);
    TRY("interp path too long", ENOEXEC, 64, 300, 5000, 1);
    TRY("interp path of one byte", ENOEXEC, 64, 300, 1, 1);
    TRY("interp path without NUL", ENOEXEC, 64, 300, 18, 0);
    TRY("interp missing", ENOENT, 64, 300, 19, 1);
    return t_finish();
}
