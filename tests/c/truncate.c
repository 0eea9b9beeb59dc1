/* truncate and ftruncate: shrink, extend with zeros, errors. */
#include "common.h"

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct stat st;
    CHECK(write_file("f", "0123456789") == 0);
    OK("truncate shrink", truncate("f", 4));
    printf("content: %s\n", read_file("f"));
    OK("truncate extend", truncate("f", 8));
    CHECK(stat("f", &st) == 0);
    printf("size: %ld\n", (long)st.st_size);
    int fd = open("f", O_RDONLY);
    char buf[16];
    ssize_t n = read(fd, buf, sizeof buf);
    printf("read %ld bytes, tail zero: %d\n", (long)n, n == 8 && buf[4] == 0 && buf[7] == 0);
    ERR("ftruncate read-only fd", ftruncate(fd, 0), EINVAL);
    close(fd);
    fd = open("f", O_RDWR);
    OK("ftruncate 0", ftruncate(fd, 0));
    CHECK(fstat(fd, &st) == 0);
    printf("size: %ld\n", (long)st.st_size);
    /* the offset is not moved: a write after truncation leaves a hole */
    CHECK(lseek(fd, 5, SEEK_SET) == 5);
    CHECK(write(fd, "X", 1) == 1);
    CHECK(fstat(fd, &st) == 0);
    printf("size after write at 5: %ld\n", (long)st.st_size);
    OK("ftruncate large", ftruncate(fd, 1 << 20));
    CHECK(lseek(fd, (1 << 20) - 1, SEEK_SET) == (1 << 20) - 1);
    CHECK(read(fd, buf, 4) == 1 && buf[0] == 0);
    ERR("ftruncate negative", ftruncate(fd, -1), EINVAL);
    close(fd);
    ERR("truncate missing", truncate("nope", 0), ENOENT);
    CHECK(mkdir("d", 0755) == 0);
    ERR("truncate dir", truncate("d", 0), EISDIR);
    ERR("ftruncate bad fd", ftruncate(999, 0), EBADF);
    fd = open("d", O_RDONLY);
    ERR("ftruncate dir fd", ftruncate(fd, 0), EINVAL);
    close(fd);
    CHECK(symlink("f", "l") == 0);
    OK("truncate through symlink", truncate("l", 3));
    CHECK(stat("f", &st) == 0);
    printf("target size: %ld\n", (long)st.st_size);
    return t_finish();
}
