/* Sequential file I/O in 1 MiB blocks; prints MiB/s on its last line.
 *   seqio write PATH MIB   unlink PATH (untimed), then create it, write MIB blocks, fsync,
 *                          close (all timed); every 4 KiB page differs from every other one,
 *                          in this file and in those of earlier runs, so nothing can be
 *                          deduplicated against an old version
 *   seqio read PATH        open PATH, read it to the end, close (all timed)
 * The read is meant to run in a new process (for the LibOS: a new `occlum run`), so it reads
 * what the write committed, not a page cache the writer left behind. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BLOCK (1 << 20)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    static char buf[BLOCK];
    if (argc == 4 && strcmp(argv[1], "write") == 0) {
        long n = atol(argv[3]);
        unsigned long long x = 88172645463325252ULL ^ (unsigned long long)time(NULL) ^
                               ((unsigned long long)getpid() << 32);
        for (size_t i = 0; i < BLOCK; i += 8) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            memcpy(buf + i, &x, 8);
        }
        if (unlink(argv[2]) != 0 && errno != ENOENT) {
            perror(argv[2]);
            return 1;
        }
        double a = now();
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            perror(argv[2]);
            return 1;
        }
        for (long i = 0; i < n; i++) {
            for (size_t p = 0; p < BLOCK; p += 4096) /* every page differs */
                memcpy(buf + p, &i, sizeof i);
            if (write(fd, buf, BLOCK) != BLOCK) {
                perror("write");
                return 1;
            }
        }
        if (fsync(fd) != 0 || close(fd) != 0) {
            perror("fsync/close");
            return 1;
        }
        double b = now();
        printf("%.1f\n", n / (b - a));
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "read") == 0) {
        double a = now();
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) {
            perror(argv[2]);
            return 1;
        }
        long long total = 0;
        ssize_t r;
        while ((r = read(fd, buf, BLOCK)) > 0)
            total += r;
        if (r < 0 || close(fd) != 0) {
            perror("read");
            return 1;
        }
        double b = now();
        if (total == 0) {
            fprintf(stderr, "%s is empty\n", argv[2]);
            return 1;
        }
        printf("%.1f\n", total / (double)BLOCK / (b - a));
        return 0;
    }
    fprintf(stderr, "usage: seqio write PATH MIB | seqio read PATH\n");
    return 2;
}
