/* open(2) flags: O_CREAT, O_EXCL, O_TRUNC, O_APPEND, O_DIRECTORY, O_NOFOLLOW. */
#include "common.h"

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    char buf[64];

    ERR("open missing", open("f", O_RDONLY), ENOENT);
    int fd = OK("creat", open("f", O_RDWR | O_CREAT | O_EXCL, 0600));
    CHECK(write(fd, "hello", 5) == 5);
    close(fd);
    ERR("creat excl existing", open("f", O_RDWR | O_CREAT | O_EXCL, 0600), EEXIST);
    fd = OK("creat existing", open("f", O_RDWR | O_CREAT, 0600));
    CHECK(read(fd, buf, sizeof buf) == 5);
    close(fd);

    fd = OK("append", open("f", O_WRONLY | O_APPEND));
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    CHECK(write(fd, " world", 6) == 6);
    printf("offset after append: %ld\n", (long)lseek(fd, 0, SEEK_CUR));
    close(fd);
    printf("content: %s\n", read_file("f"));

    fd = OK("trunc", open("f", O_WRONLY | O_TRUNC));
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    printf("size after trunc: %ld\n", (long)st.st_size);
    close(fd);

    /* O_RDONLY|O_TRUNC on an existing file still truncates on Linux */
    CHECK(write_file("g", "abc") == 0);
    ERR("write on rdonly fd", ({ int f = open("g", O_RDONLY); long r = write(f, "x", 1); int e = errno; close(f); errno = e; r; }), EBADF);
    ERR("read on wronly fd", ({ int f = open("g", O_WRONLY); long r = read(f, buf, 1); int e = errno; close(f); errno = e; r; }), EBADF);

    CHECK(mkdir("d", 0755) == 0);
    fd = OK("O_DIRECTORY on dir", open("d", O_RDONLY | O_DIRECTORY));
    close(fd);
    ERR("O_DIRECTORY on file", open("g", O_RDONLY | O_DIRECTORY), ENOTDIR);
    ERR("write-open a dir", open("d", O_WRONLY), EISDIR);
    ERR("O_CREAT on dir", open("d", O_RDWR | O_CREAT, 0644), EISDIR);
    ERR("path through file", open("g/x", O_RDONLY), ENOTDIR);
    ERR("creat in missing dir", open("nodir/x", O_WRONLY | O_CREAT, 0644), ENOENT);

    CHECK(symlink("g", "lnk") == 0);
    CHECK(symlink("missing-target", "dangling") == 0);
    ERR("O_NOFOLLOW on symlink", open("lnk", O_RDONLY | O_NOFOLLOW), ELOOP);
    fd = OK("follow symlink", open("lnk", O_RDONLY));
    CHECK(read(fd, buf, 3) == 3 && memcmp(buf, "abc", 3) == 0);
    close(fd);
    fd = OK("O_PATH|O_NOFOLLOW on symlink", open("lnk", O_PATH | O_NOFOLLOW));
    CHECK(fstat(fd, &st) == 0 && S_ISLNK(st.st_mode));
    close(fd);
    fd = OK("O_CREAT through dangling symlink", open("dangling", O_WRONLY | O_CREAT, 0644));
    close(fd);
    CHECK(access("missing-target", F_OK) == 0);
    ERR("O_CREAT|O_EXCL on symlink", open("lnk", O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);

    fd = OK("creat mode", open("m", O_WRONLY | O_CREAT, 0777));
    CHECK(fstat(fd, &st) == 0);
    printf("mode with umask 022: %o\n", st.st_mode & 07777);
    close(fd);

    ERR("empty path", open("", O_RDONLY), ENOENT);
    ERR("bad flags O_DIRECTORY|O_CREAT on new", open("newdir", O_DIRECTORY | O_CREAT | O_RDWR, 0755), EINVAL);

    /* descriptors are the lowest free numbers */
    int a = open("g", O_RDONLY), b = open("g", O_RDONLY);
    close(a);
    int c = open("g", O_RDONLY);
    CHECK(c == a);
    close(b);
    close(c);
    ERR("close bad fd", close(999), EBADF);
    return t_finish();
}
