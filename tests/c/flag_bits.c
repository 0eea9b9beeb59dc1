/* Unknown flag bits, call by call, as Linux treats them: most calls refuse a bit they do not
 * know with EINVAL before looking at anything else (the AT_* calls, renameat2, the xattr
 * calls, openat2, accept4, msync, umount2, pidfd_send_signal, statx's reserved mask bit),
 * open(2) and openat(2) drop unknown bits silently, and statx ignores an unknown mask bit.
 * Each refusal is paired with the same call with known flags, which fails otherwise (ENOENT,
 * EBADF) or succeeds, so that the EINVAL can only come from the flag bits. */
#include "common.h"
#include <linux/openat2.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/xattr.h>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
#ifndef SYS_faccessat2
#define SYS_faccessat2 439
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_setxattrat
#define SYS_setxattrat 463
#endif
#ifndef SYS_getxattrat
#define SYS_getxattrat 464
#endif
#ifndef SYS_listxattrat
#define SYS_listxattrat 465
#endif
#ifndef SYS_removexattrat
#define SYS_removexattrat 466
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE 2
#endif

struct xattr_args_v0 {
    unsigned long long value;
    unsigned int size;
    unsigned int flags;
};

/* AT_* bits no call takes (0x8 is below every AT_ flag; 0x80000 is unused) */
#define AT_UNKNOWN 0x80008

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(write_file("f", "data") == 0);
    CHECK(mkdir("d", 0755) == 0);
    struct stat st;
    char stx[256];

    /* open(2) and openat(2) drop what they do not know; the descriptor does not show it */
    int fd = OK("open unknown", syscall(SYS_open, "f", O_RDONLY | 0x10 | 0x40000000));
    printf("open F_GETFL unknown: %d\n", (fcntl(fd, F_GETFL) & (0x10 | 0x40000000)) != 0);
    close(fd);
    fd = OK("openat unknown", syscall(SYS_openat, AT_FDCWD, "f", O_RDONLY | 0x20));
    close(fd);
    /* openat2 refuses them, as it refuses unknown RESOLVE_ bits */
    struct open_how how = {.flags = O_RDONLY | 0x20};
    ERR("openat2 unknown", syscall(SYS_openat2, AT_FDCWD, "f", &how, sizeof how), EINVAL);
    how.flags = O_RDONLY | (1ULL << 40);
    ERR("openat2 high", syscall(SYS_openat2, AT_FDCWD, "f", &how, sizeof how), EINVAL);
    /* with O_PATH, open(2) keeps only the flags O_PATH takes; openat2 refuses the others */
    how.flags = O_PATH | O_RDWR;
    ERR("openat2 O_PATH|O_RDWR", syscall(SYS_openat2, AT_FDCWD, "f", &how, sizeof how), EINVAL);
    fd = OK("openat O_PATH|O_RDWR", syscall(SYS_openat, AT_FDCWD, "f", O_PATH | O_RDWR));
    ERR("O_PATH write", write(fd, "x", 1), EBADF);
    close(fd);
    how.flags = O_WRONLY | O_CREAT;
    how.mode = 010644; /* a mode bit beyond 07777 */
    ERR("openat2 mode", syscall(SYS_openat2, AT_FDCWD, "c", &how, sizeof how), EINVAL);
    how.mode = 0;
    how.flags = O_RDONLY;
    how.resolve = 0x4000;
    ERR("openat2 resolve", syscall(SYS_openat2, AT_FDCWD, "f", &how, sizeof how), EINVAL);
    how.resolve = RESOLVE_BENEATH | RESOLVE_IN_ROOT;
    ERR("openat2 beneath+root", syscall(SYS_openat2, AT_FDCWD, "f", &how, sizeof how), EINVAL);

    ERR("newfstatat known", syscall(SYS_newfstatat, AT_FDCWD, "gone", &st, 0), ENOENT);
    ERR("newfstatat unknown", syscall(SYS_newfstatat, AT_FDCWD, "gone", &st, AT_UNKNOWN),
        EINVAL);
    /* newfstatat takes the AT_STATX_* bits, even both of them */
    OK("newfstatat force sync", syscall(SYS_newfstatat, AT_FDCWD, "f", &st, AT_STATX_FORCE_SYNC));
    OK("newfstatat both sync", syscall(SYS_newfstatat, AT_FDCWD, "f", &st, AT_STATX_SYNC_TYPE));
    ERR("statx unknown", syscall(SYS_statx, AT_FDCWD, "gone", AT_UNKNOWN, 0x7ff, stx), EINVAL);
    ERR("statx sync both", syscall(SYS_statx, AT_FDCWD, "gone", AT_STATX_SYNC_TYPE, 0x7ff, stx),
        EINVAL);
    ERR("statx reserved mask", syscall(SYS_statx, AT_FDCWD, "gone", 0, 0x80000000u, stx),
        EINVAL);
    OK("statx unknown mask", syscall(SYS_statx, AT_FDCWD, "f", 0, 0x40000fffu, stx));

    ERR("access unknown mode", syscall(SYS_access, "gone", 8), EINVAL);
    ERR("faccessat unknown mode", syscall(SYS_faccessat, AT_FDCWD, "gone", 0x10), EINVAL);
    ERR("faccessat2 known", syscall(SYS_faccessat2, AT_FDCWD, "gone", R_OK, AT_EACCESS), ENOENT);
    ERR("faccessat2 unknown", syscall(SYS_faccessat2, AT_FDCWD, "gone", R_OK, AT_UNKNOWN),
        EINVAL);
    ERR("faccessat2 follow", syscall(SYS_faccessat2, AT_FDCWD, "f", R_OK, AT_SYMLINK_FOLLOW),
        EINVAL);

    ERR("fchmodat2 unknown", syscall(SYS_fchmodat2, AT_FDCWD, "f", 0600, AT_UNKNOWN), EINVAL);
    ERR("fchownat unknown", syscall(SYS_fchownat, AT_FDCWD, "f", -1, -1, AT_UNKNOWN), EINVAL);
    ERR("fchownat follow", syscall(SYS_fchownat, AT_FDCWD, "f", -1, -1, AT_SYMLINK_FOLLOW),
        EINVAL);
    ERR("utimensat unknown", syscall(SYS_utimensat, AT_FDCWD, "f", NULL, AT_UNKNOWN), EINVAL);
    fd = open("f", O_RDONLY);
    ERR("futimens flags", syscall(SYS_utimensat, fd, NULL, NULL, AT_SYMLINK_NOFOLLOW), EINVAL);
    OK("futimens", syscall(SYS_utimensat, fd, NULL, NULL, 0));
    close(fd);

    ERR("linkat nofollow", syscall(SYS_linkat, AT_FDCWD, "f", AT_FDCWD, "g", AT_SYMLINK_NOFOLLOW),
        EINVAL);
    ERR("unlinkat unknown", syscall(SYS_unlinkat, AT_FDCWD, "f", AT_UNKNOWN), EINVAL);
    ERR("unlinkat nofollow", syscall(SYS_unlinkat, AT_FDCWD, "f", AT_SYMLINK_NOFOLLOW), EINVAL);
    ERR("renameat2 known", syscall(SYS_renameat2, AT_FDCWD, "gone", AT_FDCWD, "h",
                                   RENAME_NOREPLACE), ENOENT);
    ERR("renameat2 unknown", syscall(SYS_renameat2, AT_FDCWD, "f", AT_FDCWD, "h", 0x8), EINVAL);
    ERR("renameat2 exchange+noreplace",
        syscall(SYS_renameat2, AT_FDCWD, "f", AT_FDCWD, "d", RENAME_EXCHANGE | RENAME_NOREPLACE),
        EINVAL);

    ERR("setxattr unknown", syscall(SYS_setxattr, "f", "user.a", "v", 1, 0x4), EINVAL);
    ERR("lsetxattr unknown", syscall(SYS_lsetxattr, "gone", "user.a", "v", 1, 0x4), EINVAL);
    fd = open("f", O_RDONLY);
    ERR("fsetxattr unknown", syscall(SYS_fsetxattr, fd, "user.a", "v", 1, 0x4), EINVAL);
    close(fd);
    struct xattr_args_v0 xa = {.value = (unsigned long)"v", .size = 1, .flags = 0};
    ERR("setxattrat known", syscall(SYS_setxattrat, AT_FDCWD, "gone", 0, "user.a", &xa, sizeof xa),
        ENOENT);
    ERR("setxattrat unknown at", syscall(SYS_setxattrat, AT_FDCWD, "gone", AT_UNKNOWN, "user.a",
                                         &xa, sizeof xa), EINVAL);
    xa.flags = 0x4;
    ERR("setxattrat unknown", syscall(SYS_setxattrat, AT_FDCWD, "f", 0, "user.a", &xa, sizeof xa),
        EINVAL);
    xa.flags = 0;
    char lbuf[64];
    ERR("listxattrat unknown", syscall(SYS_listxattrat, AT_FDCWD, "f", AT_UNKNOWN, lbuf,
                                       sizeof lbuf), EINVAL);
    ERR("removexattrat unknown", syscall(SYS_removexattrat, AT_FDCWD, "f", AT_UNKNOWN, "user.a"),
        EINVAL);

    char *args[] = {"x", NULL};
    ERR("execveat known", syscall(SYS_execveat, AT_FDCWD, "gone", args, args, AT_SYMLINK_NOFOLLOW),
        ENOENT);
    ERR("execveat unknown", syscall(SYS_execveat, AT_FDCWD, "gone", args, args, AT_UNKNOWN),
        EINVAL);

    /* a listening socket: Linux looks at the descriptor before the flags */
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_un name = {.sun_family = AF_UNIX, .sun_path = "sock"};
    CHECK(bind(s, (struct sockaddr *)&name, sizeof name) == 0);
    CHECK(listen(s, 1) == 0);
    struct sockaddr_un peer;
    socklen_t plen = sizeof peer;
    ERR("accept4 known", syscall(SYS_accept4, s, &peer, &plen, SOCK_CLOEXEC), EAGAIN);
    ERR("accept4 unknown", syscall(SYS_accept4, s, &peer, &plen, 0x8), EINVAL);
    ERR("accept4 unknown high", syscall(SYS_accept4, s, &peer, &plen, 0x40000000), EINVAL);
    close(s);

    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    OK("msync known", syscall(SYS_msync, m, 4096, MS_SYNC));
    ERR("msync unknown", syscall(SYS_msync, m, 4096, 0x8), EINVAL);
    ERR("msync sync+async", syscall(SYS_msync, m, 4096, MS_SYNC | MS_ASYNC), EINVAL);
    munmap(m, 4096);

    ERR("umount2 known", syscall(SYS_umount2, "gone", MNT_DETACH), ENOENT);
    ERR("umount2 unknown", syscall(SYS_umount2, "gone", 0x10), EINVAL);

    int pfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    CHECK(pfd >= 0);
    OK("pidfd_send_signal known", syscall(SYS_pidfd_send_signal, pfd, 0, NULL, 0));
    ERR("pidfd_send_signal unknown", syscall(SYS_pidfd_send_signal, pfd, 0, NULL, 0x8), EINVAL);
    ERR("pidfd_send_signal two scopes", syscall(SYS_pidfd_send_signal, pfd, 0, NULL, 0x3), EINVAL);
    close(pfd);
    return t_finish();
}
