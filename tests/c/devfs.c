/* devfs: /dev/null, /dev/zero, /dev/urandom, /dev/random, /dev/fd, /dev/stdout. */
#include "common.h"
#include <sys/sysmacros.h>
#include <sys/random.h>

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct stat st;
    const char *devs[] = {"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"};
    for (int i = 0; i < 4; i++) {
        int r = stat(devs[i], &st);
        printf("%s: %s %s\n", devs[i], r == 0 ? ftype(st.st_mode) : errname(errno),
               r == 0 && (st.st_mode & 0666) == 0666 ? "rw-all" : "?");
    }
    char buf[4096];
    int fd = open("/dev/null", O_RDWR);
    printf("write /dev/null: %ld\n", (long)write(fd, "discarded", 9));
    printf("read /dev/null: %ld\n", (long)read(fd, buf, sizeof buf));
    close(fd);
    fd = open("/dev/zero", O_RDONLY);
    memset(buf, 1, sizeof buf);
    ssize_t n = read(fd, buf, sizeof buf);
    int zeros = 1;
    for (ssize_t i = 0; i < n; i++)
        zeros &= buf[i] == 0;
    printf("read /dev/zero: %ld all zero: %d\n", (long)n, zeros);
    close(fd);
    fd = open("/dev/urandom", O_RDONLY);
    unsigned char r1[64] = {0}, r2[64] = {0};
    CHECK(read(fd, r1, 64) == 64 && read(fd, r2, 64) == 64);
    close(fd);
    int nonzero = 0;
    for (int i = 0; i < 64; i++)
        nonzero += r1[i] != 0;
    printf("urandom: not all zero: %d two reads differ: %d\n", nonzero > 0, memcmp(r1, r2, 64) != 0);
    CHECK(getrandom(r1, 64, 0) == 64);
    fd = open("/dev/random", O_RDONLY);
    printf("read /dev/random: %ld\n", (long)read(fd, r2, 16));
    close(fd);
    ERR("create in /dev/null", open("/dev/null/x", O_CREAT | O_WRONLY, 0644), ENOTDIR);

    fd = open("/dev/fd/1", O_WRONLY);
    CHECK(fd >= 0);
    dprintf(fd, "via /dev/fd/1\n");
    close(fd);
    fflush(stdout);
    fd = open("/dev/stdout", O_WRONLY);
    CHECK(fd >= 0);
    dprintf(fd, "via /dev/stdout\n");
    close(fd);
    CHECK(lstat("/dev/fd", &st) == 0);
    printf("/dev/fd is a symlink or dir: %d\n", S_ISLNK(st.st_mode) || S_ISDIR(st.st_mode));
    /* a regular file can be mmapped of /dev/zero privately */
    return t_finish();
}
