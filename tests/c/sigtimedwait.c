/* sigtimedwait, sigwaitinfo and sigwait: take blocked signals synchronously with their
 * siginfo; EAGAIN on timeout (zero and positive), EINTR when a handled signal outside the set
 * arrives, EINVAL for a bad timeout; queued real-time signals in order. */
#include "common.h"
#include <signal.h>
#include <sys/syscall.h>

static volatile sig_atomic_t handled;

static void on_signal(int sig)
{
    (void)sig;
    handled++;
}

static pid_t send_later(int sig, int delay_ms)
{
    pid_t parent = getpid();
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        usleep(delay_ms * 1000);
        kill(parent, sig);
        _exit(0);
    }
    return c;
}

static const char *code_name(int code)
{
    switch (code) {
    case SI_USER: return "SI_USER";
    case SI_QUEUE: return "SI_QUEUE";
    case SI_TKILL: return "SI_TKILL";
    case SI_TIMER: return "SI_TIMER";
    case CLD_EXITED: return "CLD_EXITED";
    default: return "?";
    }
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    pid_t me = getpid();
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGRTMIN);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &old);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);

    siginfo_t si;
    struct timespec zero = {0, 0}, short_wait = {0, 30 * 1000000};
    ERR("nothing pending, zero timeout", sigtimedwait(&usr1, &si, &zero), EAGAIN);
    long t0 = mono_ms();
    ERR("nothing pending, 30 ms", sigtimedwait(&usr1, &si, &short_wait), EAGAIN);
    printf("waited the timeout: %d\n", mono_ms() - t0 >= 29);
    ERR("bad timeout", sigtimedwait(&usr1, &si, &(struct timespec){0, 1000000000}), EINVAL);
    ERR("negative timeout", sigtimedwait(&usr1, &si, &(struct timespec){-1, 0}), EINVAL);

    /* pending already */
    kill(me, SIGUSR1);
    memset(&si, 0, sizeof si);
    int r = sigwaitinfo(&usr1, &si);
    printf("sigwaitinfo: %d code %s pid-is-me %d\n", r, code_name(si.si_code), si.si_pid == me);
    sigqueue(me, SIGUSR1, (union sigval){.sival_int = 77});
    memset(&si, 0, sizeof si);
    r = sigtimedwait(&usr1, &si, &zero);
    printf("sigtimedwait queued: %d code %s value %d\n", r, code_name(si.si_code), si.si_value.sival_int);
    sigset_t pend;
    sigpending(&pend);
    printf("consumed: %d\n", !sigismember(&pend, SIGUSR1));

    /* arrives while waiting, from a child */
    pid_t c = send_later(SIGUSR1, 20);
    memset(&si, 0, sizeof si);
    struct timespec long_wait = {5, 0};
    r = sigtimedwait(&usr1, &si, &long_wait);
    printf("from a child: %d pid-is-child %d\n", r, si.si_pid == c);
    /* its exit, as SIGCHLD */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    memset(&si, 0, sizeof si);
    r = sigtimedwait(&chld, &si, &long_wait);
    printf("SIGCHLD: %d code %s status %d pid-is-child %d\n", r == SIGCHLD, code_name(si.si_code),
           si.si_status, si.si_pid == c);
    CHECK(wait_child(c) == 0);

    /* real-time signals queue, in order of sending */
    for (int i = 1; i <= 3; i++)
        sigqueue(me, SIGRTMIN, (union sigval){.sival_int = i * 10});
    printf("real-time:");
    for (int i = 0; i < 4; i++) {
        sigset_t rt;
        sigemptyset(&rt);
        sigaddset(&rt, SIGRTMIN);
        memset(&si, 0, sizeof si);
        r = sigtimedwait(&rt, &si, &zero);
        if (r < 0)
            printf(" %s", errname(errno));
        else
            printf(" %d", si.si_value.sival_int);
    }
    printf("\n");

    /* lowest signal first when several are pending */
    kill(me, SIGRTMIN);
    kill(me, SIGUSR1);
    sigset_t both;
    sigemptyset(&both);
    sigaddset(&both, SIGUSR1);
    sigaddset(&both, SIGRTMIN);
    int first = sigtimedwait(&both, NULL, &zero);
    int second = sigtimedwait(&both, NULL, &zero);
    printf("order: USR1 first %d, RTMIN second %d\n", first == SIGUSR1, second == SIGRTMIN);

    /* sigwait: the number only */
    kill(me, SIGUSR1);
    int sig = 0;
    r = sigwait(&usr1, &sig);
    printf("sigwait: %s, USR1 %d\n", errname(r), sig == SIGUSR1);

    /* a handled signal outside the set interrupts the wait (the raw call: musl's wrapper
     * retries after EINTR) */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGUSR2, &sa, NULL);
    c = send_later(SIGUSR2, 20);
    ERR("interrupted by a handled signal", syscall(SYS_rt_sigtimedwait, &usr1, &si, &long_wait, 8), EINTR);
    printf("handled: %d\n", (int)handled);
    CHECK(wait_child(c) == 0);
    sigtimedwait(&chld, NULL, &zero);

    /* an unblocked signal in the set is taken too if it is pending at the call: here not */
    sigprocmask(SIG_SETMASK, &old, NULL);
    ERR("set not blocked, nothing pending", sigtimedwait(&usr1, &si, &zero), EAGAIN);
    return t_finish();
}
