/* unlink, unlinkat, rmdir: errors and open-after-unlink semantics. */
#include "common.h"

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(write_file("f", "data") == 0);
    CHECK(mkdir("d", 0755) == 0);
    CHECK(write_file("d/x", "") == 0);
    ERR("unlink missing", unlink("nope"), ENOENT);
    ERR("unlink dir", unlink("d"), EISDIR);
    ERR("rmdir file", rmdir("f"), ENOTDIR);
    ERR("rmdir non-empty", rmdir("d"), ENOTEMPTY);
    ERR("rmdir dot", rmdir("d/."), EINVAL);
    ERR("rmdir missing", rmdir("nope"), ENOENT);

    int fd = open("f", O_RDWR);
    OK("unlink open file", unlink("f"));
    ERR("gone by name", access("f", F_OK), ENOENT);
    char buf[16] = {0};
    CHECK(read(fd, buf, sizeof buf - 1) == 4);
    printf("still readable: %s\n", buf);
    CHECK(write(fd, "more", 4) == 4);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    printf("nlink of unlinked open file: %ld size: %ld\n", (long)st.st_nlink, (long)st.st_size);
    close(fd);
    OK("recreate same name", write_file("f", "new"));
    printf("new f: %s\n", read_file("f"));

    int dfd = open("d", O_RDONLY | O_DIRECTORY);
    ERR("unlinkat dir without flag", unlinkat(AT_FDCWD, "d", 0), EISDIR);
    OK("unlinkat in dirfd", unlinkat(dfd, "x", 0));
    ERR("unlinkat REMOVEDIR on file", unlinkat(AT_FDCWD, "f", AT_REMOVEDIR), ENOTDIR);
    ERR("unlinkat bad flag", unlinkat(AT_FDCWD, "f", 0x1), EINVAL);
    OK("rmdir empty", rmdir("d"));
    ERR("create in removed dir", openat(dfd, "y", O_CREAT | O_WRONLY, 0644), ENOENT);
    close(dfd);

    CHECK(mkdir("e", 0755) == 0);
    CHECK(chdir("e") == 0);
    OK("rmdir cwd", rmdir("../e"));
    ERR("create in removed cwd", open("z", O_CREAT | O_WRONLY, 0644), ENOENT);
    CHECK(chdir("..") == 0 || 1);
    return t_finish();
}
