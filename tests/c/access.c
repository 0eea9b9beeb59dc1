/* access/faccessat: existence, execute permission, ENOTDIR, dirfds, AT_SYMLINK_NOFOLLOW. */
#include "common.h"
#include <sys/syscall.h>

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(write_file("f", "x") == 0);
    CHECK(chmod("f", 0644) == 0);
    CHECK(write_file("x", "#!/bin/sh\n") == 0);
    CHECK(chmod("x", 0755) == 0);
    OK("F_OK", access("f", F_OK));
    OK("R_OK", access("f", R_OK));
    ERR("X_OK without any x bit", access("f", X_OK), EACCES);
    OK("X_OK", access("x", X_OK));
    ERR("missing", access("nope", F_OK), ENOENT);
    ERR("through file", access("f/y", F_OK), ENOTDIR);
    ERR("bad mode", access("f", 0100), EINVAL);
    CHECK(mkdir("d", 0755) == 0);
    CHECK(write_file("d/in", "") == 0);
    OK("dir X_OK", access("d", X_OK));
    int dfd = open("d", O_RDONLY | O_DIRECTORY);
    OK("faccessat dirfd", faccessat(dfd, "in", R_OK, 0));
    ERR("faccessat dirfd missing", faccessat(dfd, "f", F_OK, 0), ENOENT);
    OK("faccessat absolute ignores dirfd", ({ char p[PATH_MAX]; getcwd(p, sizeof p); strcat(p, "/f"); faccessat(dfd, p, F_OK, 0); }));
    close(dfd);
    CHECK(symlink("nope", "dangling") == 0);
    ERR("dangling followed", faccessat(AT_FDCWD, "dangling", F_OK, 0), ENOENT);
    OK("dangling nofollow", faccessat(AT_FDCWD, "dangling", F_OK, AT_SYMLINK_NOFOLLOW));
    OK("raw faccessat", syscall(SYS_faccessat, AT_FDCWD, "f", R_OK));
#ifdef SYS_faccessat2
    OK("raw faccessat2 AT_EACCESS", syscall(SYS_faccessat2, AT_FDCWD, "f", R_OK, AT_EACCESS));
    ERR("faccessat2 bad flags", syscall(SYS_faccessat2, AT_FDCWD, "f", R_OK, 0x1), EINVAL);
#endif
    return t_finish();
}
