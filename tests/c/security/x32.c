/* x32 ABI syscalls (nr | 0x40000000) must not bypass the filter. */
#include "sec.h"

#define X32 0x40000000L

static long x32_getpid(void) { return syscall(X32 | SYS_getpid); }
static long x32_open(void) { return syscall(X32 | SYS_open, SECRET, O_RDONLY); }
static long x32_openat(void) { return syscall(X32 | SYS_openat, AT_FDCWD, SECRET, O_RDONLY); }
static long x32_getdents(void)
{
    char buf[512];
    int fd = open("/", O_RDONLY | O_DIRECTORY);
    return syscall(X32 | SYS_getdents64, fd, buf, sizeof buf);
}
static long x32_ptrace(void) { return syscall(X32 | 521 /* x32 ptrace */, 0, 0, 0, 0); }

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    PROBE("x32 getpid", x32_getpid);
    PROBE("x32 open of host secret", x32_open);
    PROBE("x32 openat of host secret", x32_openat);
    PROBE("x32 getdents64", x32_getdents);
    PROBE("x32 ptrace(TRACEME)", x32_ptrace);
    return sec_finish();
}
