/* select and pselect: readiness of pipes (data, EOF, full), timeouts (select updates the
 * timeval), EBADF/EINVAL, and pselect's atomic signal mask: a signal blocked outside the call
 * interrupts it, even one already pending when it starts. */
#include "common.h"
#include <signal.h>
#include <sys/select.h>
#include <sys/time.h>

static volatile sig_atomic_t usr1;

static void on_usr1(int sig)
{
    (void)sig;
    usr1++;
}

/* select on one read and one write fd with a zero timeout: "r w" flags */
static void show(const char *label, int rfd, int wfd)
{
    fd_set r, w;
    FD_ZERO(&r);
    FD_ZERO(&w);
    if (rfd >= 0)
        FD_SET(rfd, &r);
    if (wfd >= 0)
        FD_SET(wfd, &w);
    struct timeval tv = {0, 0};
    int n = select((rfd > wfd ? rfd : wfd) + 1, &r, &w, NULL, &tv);
    printf("%s: %d readable %d writable %d\n", label, n, rfd >= 0 && FD_ISSET(rfd, &r),
           wfd >= 0 && FD_ISSET(wfd, &w));
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    int p[2];
    CHECK(pipe(p) == 0);
    show("empty pipe", p[0], p[1]);
    CHECK(write(p[1], "x", 1) == 1);
    show("one byte", p[0], p[1]);

    /* a full pipe is not writable */
    int q[2];
    CHECK(pipe2(q, O_NONBLOCK) == 0);
    char buf[4096];
    memset(buf, 'z', sizeof buf);
    while (write(q[1], buf, sizeof buf) > 0)
        ;
    show("full pipe", -1, q[1]);
    close(q[0]);
    show("write end, reader gone", -1, q[1]);
    close(q[1]);

    /* EOF is readable */
    char c;
    CHECK(read(p[0], &c, 1) == 1);
    close(p[1]);
    show("writer gone", p[0], -1);
    close(p[0]);

    /* a timeout: select returns 0 and leaves the timeval at zero */
    CHECK(pipe(p) == 0);
    fd_set r;
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    struct timeval tv = {0, 30000};
    long t0 = mono_ms();
    int n = select(p[0] + 1, &r, NULL, NULL, &tv);
    printf("select timeout: %d, waited %d, timeval left %ld.%06ld, set cleared %d\n", n,
           mono_ms() - t0 >= 29, (long)tv.tv_sec, (long)tv.tv_usec, !FD_ISSET(p[0], &r));
    /* data from a child ends the wait; the timeval keeps the time left */
    fflush(stdout);
    pid_t ch = fork();
    if (ch == 0) {
        usleep(20000);
        write(p[1], "y", 1);
        _exit(0);
    }
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    tv = (struct timeval){5, 0};
    n = select(p[0] + 1, &r, NULL, NULL, &tv);
    printf("select woken by data: %d, time left between 0 and 5 s: %d\n", n,
           tv.tv_sec < 5 && tv.tv_sec >= 4);
    CHECK(wait_child(ch) == 0);

    /* errors */
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    int bad = p[1] + 10;
    fd_set rb;
    FD_ZERO(&rb);
    FD_SET(bad, &rb);
    tv = (struct timeval){0, 0};
    ERR("select on a closed fd", select(bad + 1, &rb, NULL, NULL, &tv), EBADF);
    ERR("select negative nfds", select(-1, &r, NULL, NULL, &tv), EINVAL);
    tv = (struct timeval){0, -1};
    ERR("select negative timeout", select(p[0] + 1, &r, NULL, NULL, &tv), EINVAL);
    struct timespec ts0 = {0, 0};
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    printf("pselect ready: %d\n", pselect(p[0] + 1, &r, NULL, NULL, &ts0, NULL));
    CHECK(read(p[0], &c, 1) == 1);

    /* pselect's mask: SIGUSR1 blocked normally, let through only during the call */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t block, during;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, NULL);
    sigemptyset(&during);

    pid_t parent = getpid();
    ch = fork();
    if (ch == 0) {
        usleep(20000);
        kill(parent, SIGUSR1);
        _exit(0);
    }
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    struct timespec ts = {5, 0};
    ERR("pselect interrupted", pselect(p[0] + 1, &r, NULL, NULL, &ts, &during), EINTR);
    printf("handler ran: %d\n", (int)usr1);
    CHECK(wait_child(ch) == 0);

    /* already pending when the call starts: interrupted at once, no lost wake-up */
    kill(getpid(), SIGUSR1);
    printf("handler runs while it is pending: %d\n", (int)usr1);
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    t0 = mono_ms();
    ERR("pselect with a pending signal", pselect(p[0] + 1, &r, NULL, NULL, &ts, &during), EINTR);
    printf("handler ran: %d, at once: %d\n", (int)usr1, mono_ms() - t0 < 2000);

    /* the mask is restored afterwards, and a mask that keeps it blocked times out */
    kill(getpid(), SIGUSR1);
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    struct timespec ts20 = {0, 20 * 1000000};
    printf("pselect keeping it blocked: %d, handler ran: %d\n",
           pselect(p[0] + 1, &r, NULL, NULL, &ts20, &block), (int)usr1);
    sigset_t pend;
    sigpending(&pend);
    printf("still pending: %d\n", sigismember(&pend, SIGUSR1));
    sigprocmask(SIG_UNBLOCK, &block, NULL);
    printf("after unblock: %d\n", (int)usr1);

    /* plain select is interrupted by a handled signal too */
    struct itimerval it = {{0, 0}, {0, 20000}};
    signal(SIGALRM, on_usr1);
    setitimer(ITIMER_REAL, &it, NULL);
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    tv = (struct timeval){5, 0};
    ERR("select interrupted by SIGALRM", select(p[0] + 1, &r, NULL, NULL, &tv), EINTR);
    return t_finish();
}
