/* posix_spawn + waitpid of a program N times: prints the median microseconds per spawn.
 * usage: spawn N program [args...] */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: spawn N program [args...]\n");
        return 2;
    }
    int n = atoi(argv[1]);
    double *t = calloc(n, sizeof *t);
    for (int i = 0; i < n; i++) {
        struct timespec a, b;
        pid_t pid;
        int st;
        clock_gettime(CLOCK_MONOTONIC, &a);
        if (posix_spawn(&pid, argv[2], NULL, NULL, argv + 2, environ) != 0) {
            perror("posix_spawn");
            return 1;
        }
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "child failed\n");
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        t[i] = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3;
    }
    qsort(t, n, sizeof *t, cmp);
    printf("%.1f\n", t[n / 2]);
    return 0;
}
