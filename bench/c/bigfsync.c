/* fsync of a small change in a big file:
 *   bigfsync FILE MIB REPS
 * writes MIB MiB of data to FILE and fsyncs it (timed: "fill <s>"), then REPS times changes
 * 4 KiB at a pseudo-random page-aligned offset and fsyncs (each timed); prints
 * "fill <s>" and "fsync4k <median s>" lines. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bigfsync FILE MIB REPS\n");
        return 2;
    }
    long mib = atol(argv[2]), reps = atol(argv[3]);
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || reps < 1 || reps > 1000) {
        perror("open");
        return 1;
    }
    size_t mb = 1 << 20;
    unsigned char *buf = malloc(mb);
    double a = now();
    for (long i = 0; i < mib; i++) {
        for (size_t j = 0; j < mb; j++)
            buf[j] = (unsigned char)(i * 131 + j * 7 + 1);
        if (write(fd, buf, mb) != (ssize_t)mb) {
            perror("write");
            return 1;
        }
    }
    if (fsync(fd) != 0) {
        perror("fsync");
        return 1;
    }
    printf("fill %.3f\n", now() - a);
    double t[1000];
    unsigned long x = 12345;
    for (long r = 0; r < reps; r++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        off_t off = (off_t)((x >> 33) % (unsigned long)(mib * 256)) * 4096;
        memset(buf, (int)(r + 3), 4096);
        double b = now();
        if (pwrite(fd, buf, 4096, off) != 4096 || fsync(fd) != 0) {
            perror("pwrite/fsync");
            return 1;
        }
        t[r] = now() - b;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp);
    printf("fsync4k %.6f\n", t[reps / 2]);
    return close(fd) == 0 ? 0 : 1;
}
