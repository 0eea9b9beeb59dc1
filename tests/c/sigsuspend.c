/* sigsuspend: waits with a temporary mask, returns EINTR after a handler, restores the mask;
 * a signal already pending is taken at once; signals the temporary mask blocks stay pending.
 * pause() returns EINTR after a handler too. */
#include "common.h"
#include <signal.h>
#include <sys/time.h>

static volatile sig_atomic_t usr1, usr2, alrm;

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        usr1++;
    else if (sig == SIGUSR2)
        usr2++;
    else if (sig == SIGALRM)
        alrm++;
}

/* A child that sends signals to the parent after a short delay. */
static pid_t send_later(int first, int second, int delay_ms)
{
    pid_t parent = getpid();
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        usleep(delay_ms * 1000);
        kill(parent, first);
        if (second) {
            usleep(10000);
            kill(parent, second);
        }
        _exit(0);
    }
    return c;
}

static int blocked(int sig)
{
    sigset_t cur;
    sigprocmask(SIG_SETMASK, NULL, &cur);
    return sigismember(&cur, sig);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);

    sigset_t block, old, empty;
    sigemptyset(&empty);
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGUSR2);
    sigprocmask(SIG_BLOCK, &block, &old);

    /* a signal arrives while suspended */
    pid_t c = send_later(SIGUSR1, 0, 20);
    ERR("sigsuspend woken by SIGUSR1", sigsuspend(&empty), EINTR);
    printf("usr1 %d, mask restored: USR1 blocked %d\n", (int)usr1, blocked(SIGUSR1));
    CHECK(wait_child(c) == 0);

    /* pending before the call: taken at once */
    kill(getpid(), SIGUSR1);
    printf("usr1 while blocked: %d\n", (int)usr1);
    ERR("sigsuspend with one pending", sigsuspend(&empty), EINTR);
    printf("usr1 %d\n", (int)usr1);

    /* a temporary mask that still blocks SIGUSR2: only SIGUSR1 ends the wait */
    sigset_t only2;
    sigemptyset(&only2);
    sigaddset(&only2, SIGUSR2);
    c = send_later(SIGUSR2, SIGUSR1, 10);
    ERR("sigsuspend blocking USR2", sigsuspend(&only2), EINTR);
    sigset_t pend;
    sigpending(&pend);
    printf("usr1 %d usr2 %d, USR2 pending %d\n", (int)usr1, (int)usr2, sigismember(&pend, SIGUSR2));
    CHECK(wait_child(c) == 0);
    sigprocmask(SIG_UNBLOCK, &only2, NULL);
    printf("after unblocking USR2: usr2 %d\n", (int)usr2);
    sigprocmask(SIG_BLOCK, &only2, NULL);

    /* both arrive: both handlers run before sigsuspend returns */
    c = send_later(SIGUSR1, SIGUSR2, 10);
    CHECK(wait_child(c) == 0); /* both sent and pending */
    ERR("sigsuspend with two pending", sigsuspend(&empty), EINTR);
    printf("usr1 %d usr2 %d\n", (int)usr1, (int)usr2);

    /* an ignored signal does not end the wait; a handled one does */
    signal(SIGUSR2, SIG_IGN);
    c = send_later(SIGUSR2, SIGUSR1, 10);
    ERR("sigsuspend past an ignored signal", sigsuspend(&empty), EINTR);
    printf("usr1 %d usr2 %d\n", (int)usr1, (int)usr2);
    CHECK(wait_child(c) == 0);
    sigaction(SIGUSR2, &sa, NULL);

    /* pause() and an interval timer */
    sigprocmask(SIG_SETMASK, &old, NULL);
    struct itimerval it = {{0, 0}, {0, 20000}};
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    ERR("pause", pause(), EINTR);
    printf("alrm %d\n", (int)alrm);

    /* a child stopped in sigsuspend is killed by a default-action signal */
    c = fork();
    if (c == 0) {
        sigset_t e;
        sigemptyset(&e);
        signal(SIGTERM, SIG_DFL);
        sigsuspend(&e);
        _exit(0);
    }
    usleep(10000);
    kill(c, SIGTERM);
    printf("child in sigsuspend killed: %d\n", wait_child(c));
    return t_finish();
}
