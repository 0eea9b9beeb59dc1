/* How long the serving loop stops while another process makes garbage in the supervisor:
 *   call_gaps DIR N ROUNDS
 * A child creates N files of 16 bytes in DIR and deletes them, ROUNDS times (DIR must exist
 * and be empty); meanwhile this process calls stat("/") in a loop (a served call) and prints
 * how many calls it made and the longest gap between two of them, in milliseconds:
 *   "<calls> calls, longest gap <ms> ms"
 * Natively the gap is scheduling alone; inside, also whatever holds the loop (a commit's
 * slice, a garbage collection). Exits 1 if the child fails. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int churn(const char *dir, long n, long rounds)
{
    char path[4096];
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/f%ld", dir, i);
            int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            if (fd < 0 || write(fd, "0123456789abcdef", 16) != 16 || close(fd) != 0) {
                fprintf(stderr, "create %s: %s\n", path, strerror(errno));
                return 1;
            }
        }
        for (long i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/f%ld", dir, i);
            if (unlink(path) != 0) {
                fprintf(stderr, "unlink %s: %s\n", path, strerror(errno));
                return 1;
            }
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: call_gaps DIR N ROUNDS\n");
        return 2;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0)
        _exit(churn(argv[1], atol(argv[2]), atol(argv[3])));
    struct stat st;
    long calls = 0;
    double last = now(), longest = 0;
    int status = 0;
    for (;;) {
        stat("/", &st);
        double t = now();
        if (t - last > longest)
            longest = t - last;
        last = t;
        calls++;
        pid_t done = waitpid(child, &status, WNOHANG);
        if (done == child)
            break;
    }
    printf("%ld calls, longest gap %.1f ms\n", calls, longest * 1e3);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
