/* link/linkat: hard links share data and inode; nlink accounting; errors. */
#include "common.h"

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct stat a, b;
    CHECK(write_file("f", "one") == 0);
    OK("link", link("f", "g"));
    CHECK(stat("f", &a) == 0 && stat("g", &b) == 0);
    printf("same inode: %d nlink: %ld\n", a.st_ino == b.st_ino, (long)a.st_nlink);
    int fd = open("g", O_WRONLY | O_APPEND);
    CHECK(write(fd, " two", 4) == 4);
    close(fd);
    printf("f: %s\n", read_file("f"));
    ERR("link existing", link("f", "g"), EEXIST);
    ERR("link missing", link("nope", "h"), ENOENT);
    CHECK(mkdir("d", 0755) == 0);
    ERR("link dir", link("d", "d2"), EPERM);
    OK("link into subdir", link("f", "d/f3"));
    CHECK(stat("f", &a) == 0);
    printf("nlink: %ld\n", (long)a.st_nlink);
    OK("unlink original", unlink("f"));
    printf("g after unlink of f: %s\n", read_file("g"));
    CHECK(stat("g", &a) == 0);
    printf("nlink: %ld\n", (long)a.st_nlink);

    CHECK(symlink("g", "s") == 0);
    OK("linkat symlink nofollow", linkat(AT_FDCWD, "s", AT_FDCWD, "s-hard", 0));
    CHECK(lstat("s-hard", &a) == 0);
    printf("linkat without FOLLOW links the symlink: %s\n", ftype(a.st_mode));
    OK("linkat follow", linkat(AT_FDCWD, "s", AT_FDCWD, "g-hard", AT_SYMLINK_FOLLOW));
    CHECK(lstat("g-hard", &a) == 0);
    printf("linkat with FOLLOW links the target: %s\n", ftype(a.st_mode));
    fd = open("g", O_RDONLY);
    OK("linkat AT_EMPTY_PATH", linkat(fd, "", AT_FDCWD, "from-fd", AT_EMPTY_PATH));
    close(fd);
    printf("from-fd: %s\n", read_file("from-fd"));
    ERR("link into missing dir", link("g", "nodir/x"), ENOENT);
    return t_finish();
}
