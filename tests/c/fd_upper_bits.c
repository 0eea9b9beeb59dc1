/* A descriptor argument is a C int: Linux reads the low 32 bits of the register and ignores
 * the upper half, for served calls too (the LibOS decodes fd and dirfd arguments by kind). */
#include "common.h"
#include <sys/syscall.h>

#define HI 0x5a5a000000000000UL

static long fdarg(int fd)
{
    return (long)(HI | (unsigned int)fd);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(write_file("f", "data") == 0);
    int fd = open("f", O_RDWR);
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    CHECK(fd >= 0 && dir >= 0);
    struct stat st;
    OK("fstat", syscall(SYS_fstat, fdarg(fd), &st));
    printf("size: %lld\n", (long long)st.st_size);
    OK("newfstatat dirfd", syscall(SYS_newfstatat, fdarg(dir), "f", &st, 0));
    OK("newfstatat AT_FDCWD", syscall(SYS_newfstatat, fdarg(AT_FDCWD), "f", &st, 0));
    long o = OK("openat AT_FDCWD", syscall(SYS_openat, fdarg(AT_FDCWD), "f", O_RDONLY));
    if (o >= 0)
        close((int)o);
    o = OK("openat dirfd", syscall(SYS_openat, fdarg(dir), "f", O_RDONLY));
    if (o >= 0)
        close((int)o);
    OK("fchmod", syscall(SYS_fchmod, fdarg(fd), 0640));
    CHECK(stat("f", &st) == 0);
    printf("mode: %o\n", st.st_mode & 07777);
    OK("fsync", syscall(SYS_fsync, fdarg(fd)));
    struct statfs_buf {
        char b[256];
    } sfs;
    OK("fstatfs", syscall(SYS_fstatfs, fdarg(fd), &sfs));
    OK("mkdirat", syscall(SYS_mkdirat, fdarg(dir), "d", 0755));
    OK("utimensat", syscall(SYS_utimensat, fdarg(dir), "d", NULL, 0));
    char buf[4096];
    OK("getdents64", syscall(SYS_getdents64, fdarg(dir), buf, sizeof buf));
    OK("unlinkat", syscall(SYS_unlinkat, fdarg(dir), "d", AT_REMOVEDIR));
    ERR("fstat -1", syscall(SYS_fstat, fdarg(-1), &st), EBADF);
    ERR("fchdir -1", syscall(SYS_fchdir, fdarg(-1)), EBADF);
    OK("fchdir", syscall(SYS_fchdir, fdarg(dir)));
    close(fd);
    close(dir);
    return t_finish();
}
