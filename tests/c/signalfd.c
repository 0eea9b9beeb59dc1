/* signalfd: a blocked signal read as a signalfd_siginfo (signo, code, pid, queued value),
 * consumed by the read; EAGAIN when nothing is pending; the mask changed in place; poll; a
 * blocking read woken by another process; SIGCHLD's exit status; the errors. */
#include "common.h"
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>

static const char *code_name(int code)
{
    switch (code) {
    case SI_USER: return "SI_USER";
    case SI_QUEUE: return "SI_QUEUE";
    case SI_TKILL: return "SI_TKILL";
    case CLD_EXITED: return "CLD_EXITED";
    case CLD_KILLED: return "CLD_KILLED";
    default: return "?";
    }
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    pid_t me = getpid();
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGUSR2);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);

    sigset_t only1;
    sigemptyset(&only1);
    sigaddset(&only1, SIGUSR1);
    int fd = OK("signalfd", signalfd(-1, &only1, SFD_NONBLOCK | SFD_CLOEXEC));
    printf("cloexec: %d\n", (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    struct signalfd_siginfo si;
    printf("struct size: %zu\n", sizeof si);
    ERR("read with nothing pending", read(fd, &si, sizeof si), EAGAIN);
    struct pollfd p = {fd, POLLIN, 0};
    printf("poll, nothing pending: %d\n", poll(&p, 1, 0));

    kill(me, SIGUSR1);
    printf("poll, USR1 pending: %d\n", poll(&p, 1, 0));
    memset(&si, 0, sizeof si);
    ssize_t n = read(fd, &si, sizeof si);
    printf("read: %ld signo %u code %s pid-is-me %d uid-is-mine %d\n", (long)n, si.ssi_signo,
           code_name(si.ssi_code), si.ssi_pid == (uint32_t)me, si.ssi_uid == getuid());
    sigset_t pend;
    sigpending(&pend);
    printf("consumed: %d\n", !sigismember(&pend, SIGUSR1));

    sigqueue(me, SIGUSR1, (union sigval){.sival_int = 314});
    memset(&si, 0, sizeof si);
    n = read(fd, &si, sizeof si);
    printf("queued: %ld code %s value %d\n", (long)n, code_name(si.ssi_code), si.ssi_int);

    /* a signal outside the fd's mask stays pending, untouched */
    kill(me, SIGUSR2);
    ERR("USR2 not in the mask", read(fd, &si, sizeof si), EAGAIN);
    sigpending(&pend);
    printf("USR2 still pending: %d\n", sigismember(&pend, SIGUSR2));
    /* change the mask in place: now it is read */
    sigaddset(&only1, SIGUSR2);
    printf("same fd back: %d\n", signalfd(fd, &only1, 0) == fd);
    memset(&si, 0, sizeof si);
    n = read(fd, &si, sizeof si);
    printf("after the mask change: %ld signo %u\n", (long)n, si.ssi_signo);

    /* several in one read */
    kill(me, SIGUSR1);
    kill(me, SIGUSR2);
    struct signalfd_siginfo many[4];
    n = read(fd, many, sizeof many);
    printf("two pending, one read: %ld bytes, signos %u %u\n", (long)n, many[0].ssi_signo,
           many[1].ssi_signo);

    /* a thread-directed signal is read too */
    raise(SIGUSR1);
    memset(&si, 0, sizeof si);
    n = read(fd, &si, sizeof si);
    printf("raise: %ld code %s\n", (long)n, code_name(si.ssi_code));
    close(fd);

    /* blocking read, woken by a child; then its SIGCHLD */
    sigset_t m2;
    sigemptyset(&m2);
    sigaddset(&m2, SIGUSR2);
    sigaddset(&m2, SIGCHLD);
    fd = signalfd(-1, &m2, 0);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        usleep(20000);
        kill(getppid(), SIGUSR2);
        _exit(6);
    }
    memset(&si, 0, sizeof si);
    n = read(fd, &si, sizeof si);
    printf("blocking read: %ld signo USR2 %d pid-is-child %d\n", (long)n, si.ssi_signo == SIGUSR2,
           si.ssi_pid == (uint32_t)c);
    memset(&si, 0, sizeof si);
    n = read(fd, &si, sizeof si);
    printf("SIGCHLD: %ld signo CHLD %d code %s status %d pid-is-child %d\n", (long)n,
           si.ssi_signo == SIGCHLD, code_name(si.ssi_code), si.ssi_status, si.ssi_pid == (uint32_t)c);
    CHECK(wait_child(c) == 6);

    /* inherited across fork: the child reads its own signals through it */
    c = fork();
    if (c == 0) {
        kill(getpid(), SIGUSR2);
        struct signalfd_siginfo s2;
        _exit(read(fd, &s2, sizeof s2) == sizeof s2 && s2.ssi_pid == (uint32_t)getpid() ? 0 : 1);
    }
    printf("child reads its own through the inherited fd: %d\n", wait_child(c));
    /* drain that SIGCHLD */
    n = read(fd, &si, sizeof si);
    printf("child's SIGCHLD: signo CHLD %d\n", si.ssi_signo == SIGCHLD);

    /* errors */
    char small[16];
    kill(me, SIGUSR2);
    ERR("read short buffer", read(fd, small, sizeof small), EINVAL);
    read(fd, &si, sizeof si);
    ERR("bad flags", signalfd(-1, &m2, 0x100), EINVAL);
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    ERR("signalfd on a pipe", signalfd(pfd[0], &m2, 0), EINVAL);
    ERR("signalfd on a closed fd", signalfd(99, &m2, 0), EBADF);
    close(fd);
    return t_finish();
}
