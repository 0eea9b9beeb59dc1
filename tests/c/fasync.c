/* O_ASYNC with F_SETOWN (and F_SETSIG): SIGIO when a pipe or a socket becomes readable, sent
 * to the owner the program named; F_GETOWN gives it back. */
#include "common.h"
#include <signal.h>
#include <sys/socket.h>

static void check_async(const char *label, int rfd, int wfd, int sig)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    OK("F_SETOWN", fcntl(rfd, F_SETOWN, getpid()));
    printf("%s: F_GETOWN is our pid: %d\n", label, fcntl(rfd, F_GETOWN) == getpid());
    if (sig != SIGIO)
        OK("F_SETSIG", fcntl(rfd, F_SETSIG, sig));
    OK("O_ASYNC", fcntl(rfd, F_SETFL, fcntl(rfd, F_GETFL) | O_ASYNC | O_NONBLOCK));
    printf("%s: O_ASYNC set: %d\n", label, !!(fcntl(rfd, F_GETFL) & O_ASYNC));
    struct timespec none = {0, 0};
    siginfo_t si;
    printf("%s: signal before data: %d\n", label, sigtimedwait(&set, &si, &none) == sig);
    OK("write", write(wfd, "x", 1));
    struct timespec wait = {5, 0};
    int got = sigtimedwait(&set, &si, &wait);
    printf("%s: signal after data: %s\n", label, got == sig ? "yes" : errname(errno));
    if (sig != SIGIO && got == sig)
        printf("%s: si_code POLL_IN %d, si_fd right %d\n", label, si.si_code == POLL_IN,
               si.si_fd == rfd);
    char c;
    OK("read", read(rfd, &c, 1));
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGIO);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);

    int p[2];
    OK("pipe", pipe(p));
    check_async("pipe", p[0], p[1], SIGIO);
    int s[2];
    OK("socketpair", socketpair(AF_UNIX, SOCK_STREAM, 0, s));
    check_async("socket", s[0], s[1], SIGUSR1);

    if (t_failures)
        return 1;
    printf("PASS\n");
    return 0;
}
