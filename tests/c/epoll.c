/* epoll over a pipe, an eventfd, a timerfd and a socketpair: level- and edge-triggered
 * readiness, EPOLLONESHOT and re-arming with EPOLL_CTL_MOD, EPOLL_CTL_DEL, EPOLLHUP and
 * EPOLLRDHUP, timeouts, epoll_pwait with a signal mask, and the errors of epoll_ctl. */
#include "common.h"
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>

static int ep;

static void add(int fd, uint32_t events, uint64_t tag)
{
    struct epoll_event ev = {.events = events, .data.u64 = tag};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0);
}

static const char *evnames(uint32_t e)
{
    static char s[96];
    s[0] = 0;
    if (e & EPOLLIN) strcat(s, "IN ");
    if (e & EPOLLOUT) strcat(s, "OUT ");
    if (e & EPOLLRDHUP) strcat(s, "RDHUP ");
    if (e & EPOLLHUP) strcat(s, "HUP ");
    if (e & EPOLLERR) strcat(s, "ERR ");
    if (e & EPOLLPRI) strcat(s, "PRI ");
    if (s[0])
        s[strlen(s) - 1] = 0;
    else
        strcpy(s, "none");
    return s;
}

/* epoll_wait and print "label: n [tag:events]..." sorted by tag */
static int show(const char *label, int timeout)
{
    struct epoll_event evs[8];
    int n = epoll_wait(ep, evs, 8, timeout);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (evs[j].data.u64 < evs[i].data.u64) {
                struct epoll_event t = evs[i];
                evs[i] = evs[j];
                evs[j] = t;
            }
    printf("%s: %d", label, n);
    if (n < 0)
        printf(" %s", errname(errno));
    for (int i = 0; i < n; i++)
        printf(" [%llu:%s]", (unsigned long long)evs[i].data.u64, evnames(evs[i].events));
    printf("\n");
    return n;
}

static void on_usr1(int sig)
{
    (void)sig;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    ep = OK("epoll_create1", epoll_create1(EPOLL_CLOEXEC));
    printf("cloexec: %d\n", (fcntl(ep, F_GETFD) & FD_CLOEXEC) != 0);
    /* the raw call: musl maps epoll_create to epoll_create1 */
    ERR("epoll_create(0)", syscall(SYS_epoll_create, 0), EINVAL);
    ERR("epoll_create1 bad flags", epoll_create1(1), EINVAL);
    show("empty set", 0);

    /* a pipe, level-triggered */
    int p[2];
    CHECK(pipe(p) == 0);
    add(p[0], EPOLLIN, 1);
    show("pipe, nothing written", 0);
    CHECK(write(p[1], "ab", 2) == 2);
    show("pipe, data", 0);
    show("pipe, data still there (level)", 0);
    char buf[64];
    CHECK(read(p[0], buf, sizeof buf) == 2);
    show("pipe, drained", 0);

    /* edge-triggered: one report per new arrival */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = 1};
    OK("MOD to EPOLLET", epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev));
    CHECK(write(p[1], "c", 1) == 1);
    show("ET, new data", 0);
    show("ET, no new data", 0);
    CHECK(write(p[1], "d", 1) == 1);
    show("ET, more data", 0);
    CHECK(read(p[0], buf, sizeof buf) == 2);

    /* one-shot: disarmed after one report until MOD */
    ev.events = EPOLLIN | EPOLLONESHOT;
    OK("MOD to EPOLLONESHOT", epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev));
    CHECK(write(p[1], "e", 1) == 1);
    show("oneshot, data", 0);
    CHECK(write(p[1], "f", 1) == 1);
    show("oneshot, disarmed", 0);
    OK("MOD re-arms", epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev));
    show("oneshot, re-armed", 0);
    CHECK(read(p[0], buf, sizeof buf) == 2);

    /* the write end: EPOLLOUT; the read end after the writer left: EPOLLHUP */
    add(p[1], EPOLLOUT, 2);
    ev.events = EPOLLIN;
    OK("MOD back to level", epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev));
    show("write end writable", 0);
    OK("DEL write end", epoll_ctl(ep, EPOLL_CTL_DEL, p[1], NULL));
    ERR("DEL again", epoll_ctl(ep, EPOLL_CTL_DEL, p[1], NULL), ENOENT);
    close(p[1]);
    show("writer closed", 0);
    OK("DEL read end", epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL));
    close(p[0]);

    /* eventfd */
    int efd = eventfd(0, EFD_NONBLOCK);
    add(efd, EPOLLIN | EPOLLOUT, 3);
    show("eventfd zero", 0);
    uint64_t one = 1;
    CHECK(write(efd, &one, 8) == 8);
    show("eventfd one", 0);
    CHECK(read(efd, &one, 8) == 8);

    /* timerfd: epoll_wait sleeps until it fires */
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    add(tfd, EPOLLIN, 4);
    ev.events = EPOLLIN;
    ev.data.u64 = 3;
    OK("MOD eventfd to IN only", epoll_ctl(ep, EPOLL_CTL_MOD, efd, &ev));
    struct itimerspec it = {{0, 0}, {0, 20 * 1000000}};
    long t0 = mono_ms();
    timerfd_settime(tfd, 0, &it, NULL);
    show("timerfd fires", 2000);
    printf("  waited for it: %d\n", mono_ms() - t0 >= 19);
    uint64_t exp;
    CHECK(read(tfd, &exp, 8) == 8);
    t0 = mono_ms();
    show("timeout 30 ms", 30);
    printf("  waited the timeout: %d\n", mono_ms() - t0 >= 29);

    /* a socketpair: IN after a send, RDHUP and HUP after the peer goes */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    add(sv[0], EPOLLIN | EPOLLOUT | EPOLLRDHUP, 5);
    show("socket, idle", 0);
    CHECK(send(sv[1], "hi", 2, 0) == 2);
    show("socket, data", 0);
    CHECK(recv(sv[0], buf, sizeof buf, 0) == 2);
    shutdown(sv[1], SHUT_WR);
    show("socket, peer shut down writing", 0);
    close(sv[1]);
    show("socket, peer closed", 0);
    close(sv[0]);
    show("closed fd leaves the set", 0);

    /* several ready at once, maxevents smaller than the number ready */
    int a[2], b[2];
    CHECK(pipe(a) == 0 && pipe(b) == 0);
    add(a[0], EPOLLIN, 6);
    add(b[0], EPOLLIN, 7);
    write(a[1], "x", 1);
    write(b[1], "x", 1);
    show("two ready", 0);
    struct epoll_event one_ev[1];
    printf("maxevents 1: %d\n", epoll_wait(ep, one_ev, 1, 0));

    /* errors */
    ERR("ADD twice", epoll_ctl(ep, EPOLL_CTL_ADD, a[0], &ev), EEXIST);
    ERR("MOD not added", epoll_ctl(ep, EPOLL_CTL_MOD, a[1], &ev), ENOENT);
    ERR("ADD itself", epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev), EINVAL);
    CHECK(write_file("plain", "x") == 0);
    int reg = open("plain", O_RDONLY);
    ERR("ADD a regular file", epoll_ctl(ep, EPOLL_CTL_ADD, reg, &ev), EPERM);
    ERR("ADD a closed fd", epoll_ctl(ep, EPOLL_CTL_ADD, 99, &ev), EBADF);
    ERR("ctl on a non-epoll fd", epoll_ctl(reg, EPOLL_CTL_ADD, a[0], &ev), EINVAL);
    ERR("bad op", epoll_ctl(ep, 42, a[0], &ev), EINVAL);
    ERR("maxevents 0", epoll_wait(ep, one_ev, 0, 0), EINVAL);
    ERR("EPOLLEXCLUSIVE with MOD",
        epoll_ctl(ep, EPOLL_CTL_MOD, a[0], &(struct epoll_event){.events = EPOLLIN | EPOLLEXCLUSIVE}),
        EINVAL);

    /* nested epoll: the inner set is readable when one of its fds is */
    int inner = epoll_create1(0);
    int c2[2];
    CHECK(pipe(c2) == 0);
    struct epoll_event iev = {.events = EPOLLIN, .data.u64 = 9};
    CHECK(epoll_ctl(inner, EPOLL_CTL_ADD, c2[0], &iev) == 0);
    epoll_ctl(ep, EPOLL_CTL_DEL, a[0], NULL);
    epoll_ctl(ep, EPOLL_CTL_DEL, b[0], NULL);
    add(inner, EPOLLIN, 8);
    show("nested, idle", 0);
    write(c2[1], "x", 1);
    show("nested, inner ready", 0);

    /* epoll_pwait: SIGUSR1 blocked, let through only during the wait */
    epoll_ctl(ep, EPOLL_CTL_DEL, inner, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t block, during;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, NULL);
    sigemptyset(&during);
    kill(getpid(), SIGUSR1);
    ERR("epoll_pwait with a pending signal", epoll_pwait(ep, one_ev, 1, 2000, &during), EINTR);

    /* the set is shared across fork: the child sees the same readiness */
    int d[2];
    CHECK(pipe(d) == 0);
    add(d[0], EPOLLIN, 10);
    write(d[1], "x", 1);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        struct epoll_event e;
        _exit(epoll_wait(ep, &e, 1, 1000) == 1 && e.data.u64 == 10 ? 0 : 1);
    }
    printf("child sees the shared set: %d\n", wait_child(c));
    return t_finish();
}
