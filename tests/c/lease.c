/* File leases (F_SETLEASE/F_GETLEASE) on a file of the scratch directory. Linux grants a read
 * lease there; the LibOS refuses leases on its files with EINVAL, as a Linux file system
 * without them does, because a lease break would hold the LibOS itself: so this prints only
 * what both must do. Whoever holds a lease, another process's blocking open for writing must
 * not stop the holder's own calls (here a stat) while the lease is being broken; the holder
 * learns of the break by SIGIO and the opener gets the file once the lease is released. */
#include "common.h"
#include <signal.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(write_file("f", "data") == 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGIO);
    sigprocmask(SIG_BLOCK, &set, NULL);

    int fd = OK("open", open("f", O_RDONLY));
    printf("no lease yet: %d\n", fcntl(fd, F_GETLEASE) == F_UNLCK);
    errno = 0;
    int leased = fcntl(fd, F_SETLEASE, F_RDLCK) == 0;
    printf("read lease granted or EINVAL: %d\n", leased || errno == EINVAL);
    printf("F_GETLEASE agrees: %d\n", fcntl(fd, F_GETLEASE) == (leased ? F_RDLCK : F_UNLCK));

    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int w = open("f", O_WRONLY); /* waits for the lease's release, if there is one */
        _exit(w >= 0 ? 0 : 1);
    }
    double t0 = now();
    siginfo_t si;
    struct timespec wait = {10, 0}, none = {0, 0};
    int sigio = sigtimedwait(&set, &si, leased ? &wait : &none) == SIGIO;
    printf("SIGIO exactly when leased: %d\n", sigio == leased);
    /* while a lease is broken, F_GETLEASE gives the type it is being broken to */
    printf("F_GETLEASE says F_UNLCK: %d\n", fcntl(fd, F_GETLEASE) == F_UNLCK);
    struct stat st;
    OK("stat while the opener waits", stat("f", &st));
    printf("stat did not wait for the lease: %d\n", now() - t0 < 5);
    if (leased) /* without a lease F_UNLCK gives EAGAIN */
        CHECK(fcntl(fd, F_SETLEASE, F_UNLCK) == 0);
    int status;
    OK("wait", waitpid(pid, &status, 0));
    printf("opener got the file: %d\n", WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(fd);

    ERR("lease on a pipe", ({
            int p[2];
            pipe(p);
            fcntl(p[0], F_SETLEASE, F_RDLCK);
        }), EINVAL);

    if (t_failures)
        return 1;
    printf("PASS\n");
    return 0;
}
