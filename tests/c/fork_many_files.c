/* A process holding about twenty thousand distinct files forks: the child's calls are served.
 *
 * The LibOS keeps a host descriptor for every file of its own file systems, in a table with
 * the programs' RLIMIT_NOFILE; filled by one program's files, it once left none for
 * discovering a new process, and the child's first call (an open) failed with ESRCH.
 */
#include "common.h"
#include <sys/resource.h>

#define WANT 20000

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct rlimit rl;
    OK("getrlimit", getrlimit(RLIMIT_NOFILE, &rl));
    rl.rlim_cur = rl.rlim_max;
    OK("raise soft limit", setrlimit(RLIMIT_NOFILE, &rl));
    long want = rl.rlim_max < WANT ? (long)rl.rlim_max : WANT;
    long n = 0;
    int last = -1;
    for (long i = 0; i < want; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%ld", i);
        int fd = open(name, O_RDWR | O_CREAT, 0644);
        if (fd < 0) {
            /* the process's limit natively; inside, a little earlier: the LibOS keeps
             * a few descriptors of its own table for its work */
            printf("stopped by: %s\n", errname(errno));
            break;
        }
        last = fd;
        n++;
    }
    if (n == want)
        printf("stopped by: EMFILE\n"); /* a host with a larger limit: as many as wanted */
    printf("opened nearly all: %d\n", n >= want - 200);
    CHECK(write(last, "data", 4) == 4);
    close(last); /* one free descriptor for each side */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("f0", O_RDONLY);
        if (fd < 0) {
            printf("child open: %s\n", errname(errno));
        } else {
            printf("child open: ok\n");
            close(fd);
        }
        fflush(stdout);
        _exit(fd < 0);
    }
    printf("child: %d\n", wait_child(pid));
    char name[32];
    snprintf(name, sizeof name, "f%ld", n - 1);
    const char *s = read_file(name);
    printf("parent reads: %s\n", s ? s : errname(errno));
    return t_finish();
}
