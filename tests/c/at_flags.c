/* fchownat and fchmodat2 refuse AT_ flags they do not know (EINVAL), before the path is
 * looked at, as Linux's do_fchownat and do_fchmodat do; the flags they know still work. */
#include "common.h"
#include <sys/syscall.h>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(write_file("f", "x") == 0);
    CHECK(symlink("f", "l") == 0);
    uid_t u = getuid();
    gid_t g = getgid();
    ERR("fchownat AT_REMOVEDIR", fchownat(AT_FDCWD, "f", u, g, AT_REMOVEDIR), EINVAL);
    ERR("fchownat unknown bit", fchownat(AT_FDCWD, "f", u, g, 0x40000000), EINVAL);
    ERR("fchownat bad flag, no file", fchownat(AT_FDCWD, "nope", u, g, AT_EACCESS), EINVAL);
    OK("fchownat nofollow", fchownat(AT_FDCWD, "l", u, g, AT_SYMLINK_NOFOLLOW));
    int fd = open("f", O_RDONLY);
    OK("fchownat AT_EMPTY_PATH", fchownat(fd, "", u, g, AT_EMPTY_PATH));
    ERR("fchmodat2 AT_REMOVEDIR", syscall(SYS_fchmodat2, AT_FDCWD, "f", 0600, AT_REMOVEDIR),
        EINVAL);
    ERR("fchmodat2 bad flag, no file",
        syscall(SYS_fchmodat2, AT_FDCWD, "nope", 0600, AT_SYMLINK_FOLLOW), EINVAL);
    OK("fchmodat2 AT_EMPTY_PATH", syscall(SYS_fchmodat2, fd, "", 0640, AT_EMPTY_PATH));
    close(fd);
    struct stat st;
    CHECK(stat("f", &st) == 0);
    printf("mode: %o\n", st.st_mode & 07777);
    return t_finish();
}
