/* While this process fsyncs a big file (argv[1], argv[2] MiB written first), a child keeps
 * making a served call (stat of that file) in a loop. Prints the fsync's result and time, how
 * many calls the child made meanwhile and the longest gap between two of them. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    long mib = atol(argv[2]);
    int go[2], report[2];
    if (pipe(go) || pipe(report))
        return 1;
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return 1;
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        close(go[1]);
        close(report[0]);
        char c;
        if (read(go[0], &c, 1) != 1)
            _exit(1);
        fcntl(go[0], F_SETFL, O_NONBLOCK);
        long n = 0;
        double last = now_ms(), gap = 0;
        struct stat st;
        for (;;) {
            if (stat(argv[1], &st) != 0)
                _exit(1);
            double t = now_ms();
            if (t - last > gap)
                gap = t - last;
            last = t;
            n++;
            if (read(go[0], &c, 1) == 1)
                break;
        }
        char line[64];
        int len = snprintf(line, sizeof line, "%ld %.1f\n", n, gap);
        _exit(write(report[1], line, len) == len ? 0 : 1);
    }
    close(go[0]);
    close(report[1]);
    size_t mb = 1 << 20;
    unsigned char *buf = malloc(mb);
    if (!buf)
        return 1;
    for (long i = 0; i < mib; i++) {
        for (size_t j = 0; j < mb; j++)
            buf[j] = (unsigned char)(i * 131 + j * 7 + 1);
        if (write(fd, buf, mb) != (ssize_t)mb)
            return 1;
    }
    if (write(go[1], "s", 1) != 1)
        return 1;
    usleep(50000);
    double t0 = now_ms();
    int r = fsync(fd);
    double t1 = now_ms();
    if (write(go[1], "e", 1) != 1)
        return 1;
    char line[64];
    ssize_t k = read(report[0], line, sizeof line - 1);
    line[k > 0 ? k : 0] = 0;
    int status;
    waitpid(pid, &status, 0);
    long n = 0;
    double gap = 0;
    if (sscanf(line, "%ld %lf", &n, &gap) != 2)
        return 1;
    printf("fsync %d %.0f ms, %ld calls meanwhile, longest gap %.1f ms\n", r, t1 - t0, n, gap);
    return r == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
