/* poll and ppoll: POLLIN/POLLOUT/POLLHUP/POLLERR/POLLNVAL on pipes and sockets (a socketpair,
 * a listening and a connected TCP socket on loopback), negative fds ignored, timeouts, a
 * blocking poll woken by another process, ppoll's signal mask, EINVAL for too many fds. */
#include "common.h"
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>

static const char *names(short e)
{
    static char s[96];
    s[0] = 0;
    if (e & POLLIN) strcat(s, "IN ");
    if (e & POLLPRI) strcat(s, "PRI ");
    if (e & POLLOUT) strcat(s, "OUT ");
    if (e & POLLRDHUP) strcat(s, "RDHUP ");
    if (e & POLLERR) strcat(s, "ERR ");
    if (e & POLLHUP) strcat(s, "HUP ");
    if (e & POLLNVAL) strcat(s, "NVAL ");
    if (s[0])
        s[strlen(s) - 1] = 0;
    else
        strcpy(s, "none");
    return s;
}

static void show(const char *label, int fd, short events)
{
    struct pollfd p = {fd, events, 0x7fff};
    int n = poll(&p, 1, 0);
    printf("%s: %d %s\n", label, n, n < 0 ? errname(errno) : names(p.revents));
}

static void on_usr1(int sig)
{
    (void)sig;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    short all = POLLIN | POLLOUT | POLLRDHUP;

    /* pipes */
    int p[2];
    CHECK(pipe(p) == 0);
    show("pipe read end, empty", p[0], all);
    show("pipe write end, empty", p[1], all);
    CHECK(write(p[1], "x", 1) == 1);
    show("pipe read end, data", p[0], all);
    show("pipe read end, asked only OUT", p[0], POLLOUT);
    close(p[1]);
    show("read end, writer gone, data left", p[0], all);
    char c;
    CHECK(read(p[0], &c, 1) == 1);
    show("read end, writer gone, drained", p[0], all);
    show("read end, writer gone, asked nothing", p[0], 0);
    close(p[0]);
    CHECK(pipe(p) == 0);
    close(p[0]);
    show("write end, reader gone", p[1], all);
    close(p[1]);

    /* a full pipe */
    CHECK(pipe2(p, O_NONBLOCK) == 0);
    char buf[4096];
    memset(buf, 'z', sizeof buf);
    while (write(p[1], buf, sizeof buf) > 0)
        ;
    show("write end, full", p[1], all);
    close(p[0]);
    close(p[1]);

    /* a socketpair */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    show("socketpair, idle", sv[0], all);
    CHECK(send(sv[1], "ab", 2, 0) == 2);
    show("socketpair, data", sv[0], all);
    shutdown(sv[1], SHUT_WR);
    show("socketpair, peer shut down writing", sv[0], all);
    close(sv[1]);
    show("socketpair, peer closed", sv[0], all);
    close(sv[0]);
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    show("datagram pair, idle", sv[0], all);
    close(sv[1]);
    show("datagram pair, peer closed", sv[0], all);
    close(sv[0]);

    /* TCP on loopback: a listener is readable when a connection waits */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t al = sizeof a;
    CHECK(getsockname(l, (struct sockaddr *)&a, &al) == 0);
    CHECK(listen(l, 4) == 0);
    show("listener, nobody", l, all);
    int cl = socket(AF_INET, SOCK_STREAM, 0);
    show("unconnected TCP socket", cl, all);
    CHECK(connect(cl, (struct sockaddr *)&a, sizeof a) == 0);
    struct pollfd lp = {l, POLLIN, 0};
    printf("listener, a connection waits: %d\n", poll(&lp, 1, 1000));
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    show("connected client", cl, all);
    CHECK(send(cl, "q", 1, 0) == 1);
    struct pollfd sp = {s, POLLIN, 0};
    CHECK(poll(&sp, 1, 1000) == 1);
    show("server side, data", s, all);
    close(cl);
    struct pollfd hp = {s, POLLRDHUP, 0};
    CHECK(poll(&hp, 1, 1000) == 1);
    show("server side, client closed", s, all);
    close(s);
    close(l);

    /* several fds at once; negative fds are skipped, closed ones are POLLNVAL */
    CHECK(pipe(p) == 0);
    struct pollfd many[4] = {{p[0], POLLIN, 0}, {-1, POLLIN, 0x7fff}, {p[1], POLLOUT, 0}, {99, POLLIN, 0}};
    int n = poll(many, 4, 0);
    printf("mixed: %d", n);
    for (int i = 0; i < 4; i++)
        printf(" [%s]", names(many[i].revents));
    printf("\n");

    /* timeouts and a blocking poll woken by a child */
    struct pollfd rp = {p[0], POLLIN, 0};
    long t0 = mono_ms();
    printf("timeout 30 ms: %d", poll(&rp, 1, 30));
    printf(", waited %d\n", mono_ms() - t0 >= 29);
    fflush(stdout);
    pid_t ch = fork();
    if (ch == 0) {
        usleep(20000);
        write(p[1], "w", 1);
        _exit(0);
    }
    n = poll(&rp, 1, 5000);
    printf("woken by the child: %d %s\n", n, names(rp.revents));
    CHECK(wait_child(ch) == 0);
    CHECK(read(p[0], &c, 1) == 1);
    printf("poll with no fds and a timeout: %d\n", poll(NULL, 0, 10));

    /* ppoll: a signal blocked outside the call interrupts it */
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
    struct timespec ts = {2, 0};
    ERR("ppoll with a pending signal", ppoll(&rp, 1, &ts, &during), EINTR);
    struct timespec ts0 = {0, 0};
    printf("ppoll zero timeout: %d\n", ppoll(&rp, 1, &ts0, NULL));
    ERR("ppoll bad timeout", ppoll(&rp, 1, &(struct timespec){0, 1000000000}, NULL), EINVAL);

    /* errors */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    ERR("more fds than RLIMIT_NOFILE", poll(many, rl.rlim_cur + 1, 0), EINVAL);
    ERR("bad pointer", syscall(SYS_poll, 8L, 1, 0), EFAULT);
    return t_finish();
}
