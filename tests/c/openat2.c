/* openat2 (raw syscall 437) with RESOLVE_* flags; E2BIG/EINVAL on bad arguments. */
#include "common.h"
#include <stdint.h>
#include <sys/syscall.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
struct oh { uint64_t flags, mode, resolve; };
#define RESOLVE_NO_XDEV 0x01
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_NO_SYMLINKS 0x04
#define RESOLVE_BENEATH 0x08
#define RESOLVE_IN_ROOT 0x10

static long o2(int dfd, const char *p, uint64_t flags, uint64_t resolve)
{
    struct oh h = {flags, 0, resolve};
    long r = syscall(SYS_openat2, dfd, p, &h, sizeof h);
    if (r >= 0)
        close((int)r);
    return r;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(mkdir("root", 0755) == 0 && mkdir("root/sub", 0755) == 0);
    CHECK(write_file("root/sub/f", "f") == 0);
    CHECK(write_file("outside", "o") == 0);
    CHECK(symlink("f", "root/sub/rel") == 0);
    CHECK(symlink("/outside", "root/abs") == 0);
    CHECK(symlink("../outside", "root/up") == 0);
    CHECK(write_file("root/outside", "inner outside") == 0);
    int r = open("root", O_RDONLY | O_DIRECTORY);

    OK("plain", o2(r, "sub/f", O_RDONLY, 0));
    OK("BENEATH inside", o2(r, "sub/../sub/f", O_RDONLY, RESOLVE_BENEATH));
    ERR("BENEATH dotdot escape", o2(r, "../outside", O_RDONLY, RESOLVE_BENEATH), EXDEV);
    ERR("BENEATH absolute", o2(r, "/etc", O_RDONLY, RESOLVE_BENEATH), EXDEV);
    ERR("BENEATH symlink escape", o2(r, "up", O_RDONLY, RESOLVE_BENEATH), EXDEV);
    ERR("BENEATH absolute symlink", o2(r, "abs", O_RDONLY, RESOLVE_BENEATH), EXDEV);
    OK("BENEATH relative symlink", o2(r, "sub/rel", O_RDONLY, RESOLVE_BENEATH));
    ERR("NO_SYMLINKS", o2(r, "sub/rel", O_RDONLY, RESOLVE_NO_SYMLINKS), ELOOP);
    OK("NO_SYMLINKS plain", o2(r, "sub/f", O_RDONLY, RESOLVE_NO_SYMLINKS));
    /* IN_ROOT: ".." and absolute symlinks stay inside the dirfd */
    {
        struct oh h = {O_RDONLY, 0, RESOLVE_IN_ROOT};
        long fd = syscall(SYS_openat2, r, "abs", &h, sizeof h);
        char buf[32] = {0};
        if (fd >= 0) {
            CHECK(read(fd, buf, sizeof buf - 1) > 0);
            close(fd);
        }
        printf("IN_ROOT absolute symlink reads: %s\n", fd >= 0 ? buf : errname(errno));
        fd = syscall(SYS_openat2, r, "../../../outside", &h, sizeof h);
        memset(buf, 0, sizeof buf);
        if (fd >= 0) {
            CHECK(read(fd, buf, sizeof buf - 1) > 0);
            close(fd);
        }
        printf("IN_ROOT dotdot reads: %s\n", fd >= 0 ? buf : errname(errno));
    }
    ERR("NO_MAGICLINKS on /proc/self/fd", ({ char p[64]; snprintf(p, sizeof p, "/proc/self/fd/%d", r); o2(AT_FDCWD, p, O_RDONLY, RESOLVE_NO_MAGICLINKS); }), ELOOP);
    ERR("BENEATH|IN_ROOT", o2(r, "sub", O_RDONLY, RESOLVE_BENEATH | RESOLVE_IN_ROOT), EINVAL);
    ERR("unknown resolve bit", o2(r, "sub", O_RDONLY, 1u << 20), EINVAL);
    ERR("unknown flag bit", o2(r, "sub", 1ull << 40, 0), EINVAL);
    {
        struct oh h = {O_RDONLY, 0644, 0};
        ERR("mode without O_CREAT", syscall(SYS_openat2, r, "sub/f", &h, sizeof h), EINVAL);
        ERR("size too small", syscall(SYS_openat2, r, "sub/f", &h, 8), EINVAL);
        char big[64] = {0};
        memcpy(big, &h, sizeof h);
        ((struct oh *)big)->mode = 0;
        big[40] = 1;
        ERR("nonzero tail of larger struct", syscall(SYS_openat2, r, "sub/f", big, sizeof big), E2BIG);
        big[40] = 0;
        long fd = OK("zero tail of larger struct", syscall(SYS_openat2, r, "sub/f", big, sizeof big));
        if (fd >= 0)
            close((int)fd);
    }
    close(r);
    return t_finish();
}
