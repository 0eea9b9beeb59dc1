/* Unix domain socket throughput: a child connects to a stream socket bound at PATH and writes
 * MiB mebibytes in 64 KiB writes, the parent accepts and reads them. Prints MB/s (10^6 bytes
 * per second). usage: unixsock MiB PATH */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    long total = atol(argv[1]) << 20;
    static char buf[65536];
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, argv[2], sizeof a.sun_path - 1);
    unlink(argv[2]);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 1) != 0)
        return 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t c = fork();
    if (c == 0) {
        int k = socket(AF_UNIX, SOCK_STREAM, 0);
        if (k < 0 || connect(k, (struct sockaddr *)&a, sizeof a) != 0)
            _exit(1);
        memset(buf, 'x', sizeof buf);
        for (long done = 0; done < total;) {
            ssize_t n = write(k, buf, sizeof buf);
            if (n <= 0)
                _exit(1);
            done += n;
        }
        _exit(0);
    }
    int conn = accept(s, NULL, NULL);
    if (conn < 0)
        return 1;
    long got = 0;
    ssize_t n;
    while ((n = read(conn, buf, sizeof buf)) > 0)
        got += n;
    int st;
    waitpid(c, &st, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    unlink(argv[2]);
    if (got != total)
        return 1;
    double sec = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%.1f\n", total / sec / 1e6);
    return 0;
}
