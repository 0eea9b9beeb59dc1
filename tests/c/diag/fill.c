/* Fills memory the address-space limit does not see: a file (argv[1] a path, e.g. in ramfs)
 * or a memfd (argv[1] "memfd"), argv[2] MiB of it, written in a child. The parent says how the
 * child ended (a write refused with its errno, or a signal), removes the file, and shows that
 * it still runs: it exits 0 if the child did not write it all. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static char chunk[1 << 20];

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int mib = atoi(argv[2]);
    int memfd = strcmp(argv[1], "memfd") == 0;
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        int fd = memfd ? memfd_create("fill", 0) : open(argv[1], O_CREAT | O_WRONLY | O_TRUNC, 0600);
        if (fd < 0) {
            printf("open: %s\n", strerror(errno));
            fflush(stdout);
            _exit(3);
        }
        memset(chunk, 'x', sizeof chunk);
        for (int i = 0; i < mib; i++) {
            if (write(fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk) {
                printf("write refused after %d MiB: %s\n", i, strerror(errno));
                fflush(stdout);
                _exit(1);
            }
        }
        printf("wrote %d MiB\n", mib);
        fflush(stdout);
        _exit(0);
    }
    int status;
    if (waitpid(c, &status, 0) != c)
        return 2;
    if (WIFSIGNALED(status))
        printf("writer killed by %s\n", strsignal(WTERMSIG(status)));
    if (!memfd && unlink(argv[1]) != 0)
        printf("unlink: %s\n", strerror(errno));
    /* the memory is back: a new process can use some */
    char *p = malloc(4 << 20);
    if (p)
        memset(p, 1, 4 << 20);
    printf("still running\n");
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}
