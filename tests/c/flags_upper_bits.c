/* The AT_* flags of the *at calls are a C int (unsigned for some): Linux reads the low 32 bits
 * and ignores the upper half of the register, so no unknown flag is seen there; the LibOS
 * decodes atflags arguments by kind, the same way. */
#include "common.h"
#include <sys/syscall.h>

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
    /* a bit of the low word the call does not know is still refused */
    ERR("unlinkat unknown", syscall(SYS_unlinkat, AT_FDCWD, "f", flagarg(0x40000000)), EINVAL);
    return t_finish();
}
