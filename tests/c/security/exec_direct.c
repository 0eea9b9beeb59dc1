/* The host kernel never loads a program itself: every exec inside (by path, by descriptor,
 * relative to a directory descriptor, of a memfd the program made) goes through the LibOS's
 * loader, whose stub stays mapped at STUB_BASE. The program run is a tiny static ELF that
 * looks for that mapping: exit 7 when it is there (the LibOS loaded it), 42 when not (the
 * host kernel did: an escape from the loader, which is what happens natively). */
#include "sec.h"
#include <elf.h>
#include <sys/mman.h>

#define STUB_BASE "\x00\x00\x00\x00\x00\x6f\x00\x00" /* 0x6F0000000000, little-endian */

static const unsigned char CODE[] =
    "\xb8\x1c\x00\x00\x00"             /* mov eax, 28 (madvise) */
    "\x48\xbf" STUB_BASE               /* movabs rdi, STUB_BASE */
    "\xbe\x00\x10\x00\x00"             /* mov esi, 4096 */
    "\x31\xd2"                         /* xor edx, edx (MADV_NORMAL) */
    "\x0f\x05"                         /* syscall: 0 if mapped, -ENOMEM if not */
    "\x48\x85\xc0"                     /* test rax, rax */
    "\x74\x07"                         /* jz loaded_by_libos */
    "\xbf\x2a\x00\x00\x00"             /* mov edi, 42 */
    "\xeb\x05"                         /* jmp out */
    "\xbf\x07\x00\x00\x00"             /* loaded_by_libos: mov edi, 7 */
    "\xb8\xe7\x00\x00\x00"             /* out: mov eax, 231 (exit_group) */
    "\x0f\x05";                        /* syscall */

static size_t build(unsigned char *buf)
{
    const unsigned long base = 0x400000;
    size_t off = sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr), size = off + sizeof CODE - 1;
    Elf64_Ehdr eh = {0};
    memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_entry = base + off;
    eh.e_phoff = sizeof eh;
    eh.e_ehsize = sizeof eh;
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = 1;
    Elf64_Phdr ph = {0};
    ph.p_type = PT_LOAD;
    ph.p_flags = PF_R | PF_X;
    ph.p_vaddr = ph.p_paddr = base;
    ph.p_filesz = ph.p_memsz = size;
    ph.p_align = 0x1000;
    memcpy(buf, &eh, sizeof eh);
    memcpy(buf + sizeof eh, &ph, sizeof ph);
    memcpy(buf + off, CODE, sizeof CODE - 1);
    return size;
}

static unsigned char image[4096];
static size_t image_size;

/* Run fn (which execs the detector) in a child; judge by its exit status. */
static void judge(const char *label, void (*fn)(void))
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        fn();
        _exit(100 + (errno & 0x7f)); /* the exec failed */
    }
    int st = 0;
    waitpid(c, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 7)
        printf("%s: contained\n", label);
    else if (WIFEXITED(st) && WEXITSTATUS(st) == 42)
        escape(label, "the host kernel loaded the program");
    else if (WIFEXITED(st) && WEXITSTATUS(st) >= 100)
        printf("%s: refused %s\n", label, errname(WEXITSTATUS(st) - 100));
    else if (WIFSIGNALED(st))
        printf("%s: refused %s\n", label, signame(WTERMSIG(st)));
    else
        escape(label, "unexpected exit status");
}

static char *const ARGS[] = {"detector", NULL};
static char *const ENV[] = {NULL};

static void by_path(void) { execve("detector", ARGS, ENV); }

static void by_fd(void)
{
    int fd = open("detector", O_RDONLY | O_CLOEXEC);
    fexecve(fd, ARGS, ENV);
}

static void by_dirfd(void)
{
    int dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    syscall(SYS_execveat, dfd, "detector", ARGS, ENV, 0);
}

static void by_memfd(void)
{
    int fd = memfd_create("detector", MFD_CLOEXEC);
    if (fd < 0 || write(fd, image, image_size) != (ssize_t)image_size)
        _exit(100 + (errno & 0x7f));
    fexecve(fd, ARGS, ENV);
}

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/exec-direct-%d", (int)getpid());
    mkdir(dir, 0755);
    if (chdir(dir) != 0) {
        printf("cannot enter %s: %s\n", dir, errname(errno));
        return 2;
    }
    image_size = build(image);
    int fd = open("detector", O_WRONLY | O_CREAT | O_TRUNC, 0755);
    if (fd < 0 || write(fd, image, image_size) != (ssize_t)image_size) {
        printf("cannot write the detector: %s\n", errname(errno));
        return 2;
    }
    close(fd);
    judge("execve of a file", by_path);
    judge("fexecve of a file", by_fd);
    judge("execveat(dirfd, name) of a file", by_dirfd);
    judge("fexecve of a memfd the program filled", by_memfd);
    unlink("detector");
    chdir("/");
    rmdir(dir);
    return sec_finish();
}
