/* utimensat/futimens: explicit times read back exactly, UTIME_OMIT, UTIME_NOW. */
#include "common.h"
#include <time.h>

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct stat st;
    CHECK(write_file("f", "x") == 0);
    struct timespec ts[2] = {{1000000000, 123456789}, {1234567890, 987654321}};
    OK("utimensat explicit", utimensat(AT_FDCWD, "f", ts, 0));
    CHECK(stat("f", &st) == 0);
    printf("atime %ld.%09ld mtime %ld.%09ld\n", (long)st.st_atim.tv_sec, st.st_atim.tv_nsec,
           (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    struct timespec omit[2] = {{0, UTIME_OMIT}, {42, 0}};
    OK("utimensat omit atime", utimensat(AT_FDCWD, "f", omit, 0));
    CHECK(stat("f", &st) == 0);
    printf("atime %ld mtime %ld\n", (long)st.st_atim.tv_sec, (long)st.st_mtim.tv_sec);

    struct timespec before;
    clock_gettime(CLOCK_REALTIME, &before);
    OK("utimensat NULL (now)", utimensat(AT_FDCWD, "f", NULL, 0));
    CHECK(stat("f", &st) == 0);
    printf("mtime is now: %d\n", st.st_mtim.tv_sec >= before.tv_sec - 1 && st.st_mtim.tv_sec <= before.tv_sec + 60);

    struct timespec now_omit[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
    OK("utimensat now/omit", utimensat(AT_FDCWD, "f", now_omit, 0));
    CHECK(stat("f", &st) == 0);
    printf("atime is now: %d mtime kept: %d\n", st.st_atim.tv_sec >= before.tv_sec - 1,
           st.st_mtim.tv_sec >= before.tv_sec - 1);

    int fd = open("f", O_RDWR);
    struct timespec t2[2] = {{5, 0}, {6, 0}};
    OK("futimens", futimens(fd, t2));
    CHECK(fstat(fd, &st) == 0);
    printf("after futimens: %ld %ld\n", (long)st.st_atim.tv_sec, (long)st.st_mtim.tv_sec);
    /* a write updates mtime */
    CHECK(write(fd, "y", 1) == 1);
    CHECK(fstat(fd, &st) == 0);
    printf("write updated mtime: %d\n", st.st_mtim.tv_sec >= before.tv_sec - 1);
    close(fd);

    CHECK(symlink("f", "l") == 0);
    struct timespec t3[2] = {{7, 0}, {8, 0}};
    OK("utimensat nofollow", utimensat(AT_FDCWD, "l", t3, AT_SYMLINK_NOFOLLOW));
    CHECK(lstat("l", &st) == 0);
    printf("link mtime: %ld\n", (long)st.st_mtim.tv_sec);
    CHECK(stat("f", &st) == 0);
    printf("target mtime unchanged: %d\n", st.st_mtim.tv_sec != 8);
    struct timespec bad[2] = {{0, 1000000000}, {0, 0}};
    ERR("bad nsec", utimensat(AT_FDCWD, "f", bad, 0), EINVAL);
    ERR("missing", utimensat(AT_FDCWD, "nope", NULL, 0), ENOENT);
    return t_finish();
}
