/* The AT_* flags of the *at calls, and the flags of renameat2, recvfrom and accept4, are a C
 * int (unsigned for some): Linux reads the low 32 bits and ignores the upper half of the
 * register, so no unknown flag is seen there; the LibOS decodes flag arguments by kind, the
 * same way. */
#include "common.h"
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
#ifndef SYS_faccessat2
#define SYS_faccessat2 439
#endif

#define HI 0x5a5a000000000000UL

static long flagarg(unsigned int flags)
{
    return (long)(HI | flags);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(write_file("f", "data") == 0);
    CHECK(symlink("f", "l") == 0);
    CHECK(mkdir("d", 0755) == 0);
    struct stat st;
    OK("newfstatat nofollow",
       syscall(SYS_newfstatat, AT_FDCWD, "l", &st, flagarg(AT_SYMLINK_NOFOLLOW)));
    printf("is link: %d\n", S_ISLNK(st.st_mode));
    OK("newfstatat 0", syscall(SYS_newfstatat, AT_FDCWD, "f", &st, flagarg(0)));
    char stx[256];
    OK("statx", syscall(SYS_statx, AT_FDCWD, "f", flagarg(0), 0x7ff, stx));
    OK("faccessat2", syscall(SYS_faccessat2, AT_FDCWD, "f", R_OK, flagarg(0)));
    OK("fchownat", syscall(SYS_fchownat, AT_FDCWD, "l", getuid(), getgid(),
                           flagarg(AT_SYMLINK_NOFOLLOW)));
    OK("utimensat", syscall(SYS_utimensat, AT_FDCWD, "f", NULL, flagarg(0)));
    OK("fchmodat2", syscall(SYS_fchmodat2, AT_FDCWD, "f", 0600, flagarg(0)));
    CHECK(stat("f", &st) == 0);
    printf("mode: %o\n", st.st_mode & 07777);
    OK("linkat", syscall(SYS_linkat, AT_FDCWD, "f", AT_FDCWD, "g", flagarg(0)));
    OK("unlinkat file", syscall(SYS_unlinkat, AT_FDCWD, "g", flagarg(0)));
    OK("unlinkat dir", syscall(SYS_unlinkat, AT_FDCWD, "d", flagarg(AT_REMOVEDIR)));
    ERR("unlinkat gone", syscall(SYS_unlinkat, AT_FDCWD, "d", flagarg(AT_REMOVEDIR)), ENOENT);
    OK("renameat2", syscall(SYS_renameat2, AT_FDCWD, "f", AT_FDCWD, "h", flagarg(0)));
    OK("renameat2 noreplace",
       syscall(SYS_renameat2, AT_FDCWD, "h", AT_FDCWD, "f", flagarg(RENAME_NOREPLACE)));
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    CHECK(write(sv[0], "x", 1) == 1);
    char c = 0;
    struct sockaddr_un from;
    socklen_t fromlen = sizeof from;
    OK("recvfrom", syscall(SYS_recvfrom, sv[1], &c, 1, flagarg(MSG_DONTWAIT),
                           (struct sockaddr *)&from, &fromlen));
    printf("got: %c\n", c);
    ERR("recvfrom empty", syscall(SYS_recvfrom, sv[1], &c, 1, flagarg(MSG_DONTWAIT),
                                  (struct sockaddr *)&from, &fromlen), EAGAIN);
    /* a bit of the low word the call does not know is still refused */
    ERR("unlinkat unknown", syscall(SYS_unlinkat, AT_FDCWD, "f", flagarg(0x40000000)), EINVAL);
    return t_finish();
}
