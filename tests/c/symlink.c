/* symlink/readlink/readlinkat: relative and absolute targets, loops, truncation, ENOENT. */
#include "common.h"

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    char buf[256];
    ssize_t n;
    CHECK(write_file("target", "data") == 0);
    OK("symlink", symlink("target", "l1"));
    n = readlink("l1", buf, sizeof buf);
    printf("readlink l1: %.*s (%ld)\n", (int)(n < 0 ? 0 : n), buf, (long)n);
    printf("through l1: %s\n", read_file("l1"));
    ERR("symlink existing", symlink("x", "l1"), EEXIST);
    ERR("readlink of file", readlink("target", buf, sizeof buf), EINVAL);
    ERR("readlink missing", readlink("nope", buf, sizeof buf), ENOENT);
    n = readlink("l1", buf, 3);
    printf("truncated readlink: %ld %.3s\n", (long)n, buf);

    OK("chain", symlink("l1", "l2"));
    printf("through chain: %s\n", read_file("l2"));
    OK("loop a", symlink("loopb", "loopa"));
    OK("loop b", symlink("loopa", "loopb"));
    ERR("open loop", open("loopa", O_RDONLY), ELOOP);
    ERR("stat loop", ({ struct stat st; stat("loopa", &st); }), ELOOP);
    OK("dangling", symlink("does/not/exist", "dangling"));
    ERR("open dangling", open("dangling", O_RDONLY), ENOENT);
    struct stat st;
    CHECK(lstat("dangling", &st) == 0 && S_ISLNK(st.st_mode));
    printf("lstat dangling size: %ld\n", (long)st.st_size);

    CHECK(mkdir("dir", 0755) == 0);
    CHECK(write_file("dir/inner", "inner") == 0);
    OK("dir symlink", symlink("dir", "dl"));
    printf("through dir link: %s\n", read_file("dl/inner"));
    OK("symlink with dotdot", symlink("../target", "dir/up"));
    printf("through dir/up: %s\n", read_file("dir/up"));
    int dfd = open("dir", O_RDONLY | O_DIRECTORY);
    OK("symlinkat", symlinkat("inner", dfd, "rel"));
    n = readlinkat(dfd, "rel", buf, sizeof buf);
    printf("readlinkat: %.*s\n", (int)(n < 0 ? 0 : n), buf);
    int lfd = openat(dfd, "rel", O_PATH | O_NOFOLLOW);
    n = readlinkat(lfd, "", buf, sizeof buf);
    printf("readlinkat empty path: %.*s\n", (int)(n < 0 ? 0 : n), buf);
    close(lfd);
    close(dfd);

    /* an absolute target is resolved from the root, not from the link's directory */
    OK("absolute symlink", symlink("/", "rootlink"));
    CHECK(stat("rootlink", &st) == 0 && S_ISDIR(st.st_mode));
    struct stat root;
    CHECK(stat("/", &root) == 0 && root.st_ino == st.st_ino);
    ERR("empty target", symlink("", "empty"), ENOENT);
    ERR("trailing slash on link to file", open("l1/", O_RDONLY), ENOTDIR);
    OK("unlink symlink keeps target", unlink("l2"));
    CHECK(access("l1", F_OK) == 0);
    return t_finish();
}
