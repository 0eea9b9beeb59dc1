/* Pipe throughput: a child writes MiB mebibytes in 64 KiB writes, the parent reads them.
 * Prints MB/s (10^6 bytes per second). usage: pipe [MiB] */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long mib = argc > 1 ? atol(argv[1]) : 1024;
    long total = mib << 20;
    static char buf[65536];
    int p[2];
    if (pipe(p) != 0)
        return 1;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t c = fork();
    if (c == 0) {
        close(p[0]);
        memset(buf, 'x', sizeof buf);
        for (long done = 0; done < total;) {
            ssize_t k = write(p[1], buf, sizeof buf);
            if (k <= 0)
                _exit(1);
            done += k;
        }
        _exit(0);
    }
    close(p[1]);
    long got = 0;
    ssize_t k;
    while ((k = read(p[0], buf, sizeof buf)) > 0)
        got += k;
    int st;
    waitpid(c, &st, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (got != total)
        return 1;
    double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    printf("%.1f\n", total / s / 1e6);
    return 0;
}
