/* Wall time of one run of a program with stdin from a file: prints milliseconds.
 *   timeit [-u PATH]... IN_FILE PROGRAM [ARGS...]
 * Each -u PATH is unlinked first (untimed; a missing file is fine).  The program's stdout goes
 * to /dev/null, its stderr is kept; a failure of the program is timeit's failure. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
    int i = 1;
    while (i + 1 < argc && strcmp(argv[i], "-u") == 0) {
        if (unlink(argv[i + 1]) != 0 && errno != ENOENT) {
            perror(argv[i + 1]);
            return 1;
        }
        i += 2;
    }
    if (argc - i < 2) {
        fprintf(stderr, "usage: timeit [-u PATH]... IN_FILE PROGRAM [ARGS...]\n");
        return 2;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, argv[i], O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    struct timespec a, b;
    pid_t pid;
    int st, err;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if ((err = posix_spawn(&pid, argv[i + 1], &fa, NULL, argv + i + 1, environ)) != 0) {
        fprintf(stderr, "posix_spawn %s: %s\n", argv[i + 1], strerror(err));
        return 1;
    }
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "%s failed (status %#x)\n", argv[i + 1], st);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.2f\n", (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
    return 0;
}
