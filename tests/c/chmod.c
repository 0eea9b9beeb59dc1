/* chmod/fchmod/fchmodat, chown/fchown/lchown to the caller's own ids, umask. */
#include "common.h"

static void mode(const char *path)
{
    struct stat st;
    if (lstat(path, &st) == 0)
        printf("%s: %s %o\n", path, ftype(st.st_mode), st.st_mode & 07777);
    else
        printf("%s: %s\n", path, errname(errno));
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(write_file("f", "x") == 0);
    mode("f");
    OK("chmod 600", chmod("f", 0600));
    mode("f");
    OK("chmod with setuid bits", chmod("f", 04755));
    mode("f");
    int fd = open("f", O_RDONLY);
    OK("fchmod", fchmod(fd, 0444));
    close(fd);
    mode("f");
    OK("fchmodat", fchmodat(AT_FDCWD, "f", 0640, 0));
    mode("f");
    ERR("chmod missing", chmod("nope", 0644), ENOENT);
    CHECK(symlink("f", "l") == 0);
    OK("chmod through symlink", chmod("l", 0604));
    mode("f");

    mode_t old = umask(027);
    printf("previous umask: %o\n", old);
    printf("umask now: %o\n", umask(027));
    CHECK(write_file("g", "") == 0);
    mode("g");
    CHECK(mkdir("d", 0777) == 0);
    mode("d");
    umask(0);
    CHECK(write_file("h", "") == 0);
    mode("h");
    umask(022);

    uid_t u = getuid();
    gid_t g = getgid();
    OK("chown to self", chown("f", u, g));
    OK("chown -1 -1", chown("f", -1, -1));
    fd = open("f", O_RDONLY);
    OK("fchown", fchown(fd, u, g));
    close(fd);
    OK("lchown symlink", lchown("l", u, g));
    OK("fchownat nofollow", fchownat(AT_FDCWD, "l", u, g, AT_SYMLINK_NOFOLLOW));
    struct stat st;
    CHECK(stat("f", &st) == 0);
    printf("owner is caller: %d group is caller: %d\n", st.st_uid == u, st.st_gid == g);
    ERR("chown missing", chown("nope", u, g), ENOENT);
    return t_finish();
}
