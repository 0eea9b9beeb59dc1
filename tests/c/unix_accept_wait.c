/* accept and recvfrom with an address on Unix sockets, when they block: the peer's name as it
 * was bound (abstract, path or none), a signal interrupting the wait (EINTR without
 * SA_RESTART, the call resumed with it), SO_RCVTIMEO, accept4's flags, MSG_TRUNC and
 * MSG_PEEK, the longest abstract names, and TCP's accept with an address beside them. */
#include "common.h"
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

static char prefix[64];

static socklen_t abstract_of(struct sockaddr_un *a, const char *name)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "%s-%s", prefix, name);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a->sun_path + 1));
}

/* "abstract <test>-NAME", "path NAME", "unnamed" or "nothing", and whether the length is
 * the one the kernel gives for it. */
static const char *show(const struct sockaddr_un *a, socklen_t len)
{
    static char s[200];
    size_t off = offsetof(struct sockaddr_un, sun_path);
    if (len == 0)
        return "nothing";
    if (len == off)
        return "unnamed";
    if (a->sun_path[0] != 0) {
        snprintf(s, sizeof s, "path %s, length %s", a->sun_path,
                 len == off + strlen(a->sun_path) + 1 ? "as Linux" : "wrong");
        return s;
    }
    size_t k = strlen(prefix);
    if (len - off - 1 >= k && memcmp(a->sun_path + 1, prefix, k) == 0)
        snprintf(s, sizeof s, "abstract <test>%.*s", (int)(len - off - 1 - k), a->sun_path + 1 + k);
    else
        snprintf(s, sizeof s, "abstract (%d bytes, not as bound)", (int)(len - off - 1));
    return s;
}

static int handled, wake_fd = -1;

static void on_alarm(int sig)
{
    (void)sig;
    handled++;
    if (wake_fd >= 0)
        write(wake_fd, "w", 1);
}

static void alarm_in(int ms, int restart)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, ms * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

/* A child that waits for a byte on rfd, then connects to `to` from a socket bound to `as`
 * (abstract NAME, a path if it has a '/', none if NULL) and sends "x". */
static pid_t client_after(int rfd, const struct sockaddr_un *to, socklen_t tolen, const char *as,
                          int type)
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        char b;
        if (read(rfd, &b, 1) != 1)
            _exit(98);
        int s = socket(AF_UNIX, type, 0);
        if (as) {
            struct sockaddr_un me;
            socklen_t ml;
            if (strchr(as, '/')) {
                memset(&me, 0, sizeof me);
                me.sun_family = AF_UNIX;
                snprintf(me.sun_path, sizeof me.sun_path, "%s", as);
                ml = (socklen_t)sizeof me;
            } else {
                ml = abstract_of(&me, as);
            }
            if (bind(s, (struct sockaddr *)&me, ml) != 0)
                _exit(99);
        }
        if (type == SOCK_DGRAM) {
            if (sendto(s, "x", 1, 0, (const struct sockaddr *)to, tolen) != 1)
                _exit(100);
        } else {
            if (connect(s, (const struct sockaddr *)to, tolen) != 0)
                _exit(100);
            send(s, "x", 1, 0);
            char k;
            recv(s, &k, 1, 0); /* until the server closes */
        }
        _exit(0);
    }
    return c;
}

static void accept_case(const char *label, const char *client_name)
{
    struct sockaddr_un ab, peer;
    socklen_t ablen = abstract_of(&ab, "server"), pl = sizeof peer;
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(l, (struct sockaddr *)&ab, ablen) == 0);
    CHECK(listen(l, 4) == 0);
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t c = client_after(p[0], &ab, ablen, client_name, SOCK_STREAM);
    /* the client connects only once the server is already waiting in accept */
    wake_fd = p[1];
    alarm_in(100, 1);
    handled = 0;
    int s = accept(l, (struct sockaddr *)&peer, &pl);
    printf("%s: accept %s, handler ran %d, client %s\n", label, s >= 0 ? "ok" : errname(errno),
           handled, show(&peer, pl));
    wake_fd = -1;
    close(s);
    close(l);
    close(p[0]);
    close(p[1]);
    printf("%s: client exit %d\n", label, wait_child(c));
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    snprintf(prefix, sizeof prefix, "occlum-wait-%d", (int)getpid());

    /* a blocking accept, resumed after a signal (SA_RESTART), gets the client's name */
    accept_case("abstract client", "client");
    accept_case("path client", "./c.sock");
    accept_case("unnamed client", NULL);

    /* without SA_RESTART a signal ends the wait with EINTR */
    struct sockaddr_un ab, peer;
    socklen_t ablen = abstract_of(&ab, "lonely"), pl = sizeof peer;
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(l, (struct sockaddr *)&ab, ablen) == 0);
    CHECK(listen(l, 4) == 0);
    handled = 0;
    alarm_in(50, 0);
    int s = accept(l, (struct sockaddr *)&peer, &pl);
    printf("accept interrupted: %s, handler ran %d\n", s >= 0 ? "ok" : errname(errno), handled);
    /* SO_RCVTIMEO bounds the wait */
    struct timeval tv = {0, 100 * 1000};
    CHECK(setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    s = accept(l, (struct sockaddr *)&peer, &pl);
    printf("accept with SO_RCVTIMEO: %s\n", s >= 0 ? "ok" : errname(errno));
    /* accept4's flags on a non-blocking listener with a client queued */
    int nb = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    pl = sizeof peer;
    s = accept4(l, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK);
    printf("accept4 with nothing queued (blocking listener, timeout): %s\n", s >= 0 ? "ok" : errname(errno));
    struct sockaddr_un me;
    socklen_t ml = abstract_of(&me, "nb-client");
    CHECK(bind(nb, (struct sockaddr *)&me, ml) == 0);
    int r = connect(nb, (struct sockaddr *)&ab, ablen);
    printf("non-blocking connect: %s\n", r == 0 ? "ok" : errname(errno));
    int fl = fcntl(l, F_GETFL);
    CHECK(fcntl(l, F_SETFL, fl | O_NONBLOCK) == 0);
    pl = sizeof peer;
    s = accept4(l, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    printf("accept4: %s, client %s, O_NONBLOCK %d, FD_CLOEXEC %d\n", s >= 0 ? "ok" : errname(errno),
           show(&peer, pl), s >= 0 && (fcntl(s, F_GETFL) & O_NONBLOCK) != 0,
           s >= 0 && (fcntl(s, F_GETFD) & FD_CLOEXEC) != 0);
    close(s);
    pl = sizeof peer;
    s = accept(l, (struct sockaddr *)&peer, &pl);
    printf("non-blocking accept with nothing queued: %s\n", s >= 0 ? "ok" : errname(errno));
    close(nb);
    close(l);

    /* datagrams: a blocking recvfrom, interrupted, timed out, and resumed */
    struct sockaddr_un da, from;
    socklen_t dalen = abstract_of(&da, "dgram"), froml;
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(bind(d, (struct sockaddr *)&da, dalen) == 0);
    char buf[32];
    handled = 0;
    alarm_in(50, 0);
    froml = sizeof from;
    ssize_t n = recvfrom(d, buf, sizeof buf, 0, (struct sockaddr *)&from, &froml);
    printf("recvfrom interrupted: %s, handler ran %d\n", n >= 0 ? "ok" : errname(errno), handled);
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t c = client_after(p[0], &da, dalen, "sender", SOCK_DGRAM);
    wake_fd = p[1];
    handled = 0;
    alarm_in(100, 1);
    froml = sizeof from;
    memset(buf, 0, sizeof buf);
    n = recvfrom(d, buf, sizeof buf, 0, (struct sockaddr *)&from, &froml);
    printf("recvfrom resumed: %ld %s, handler ran %d, from %s\n", (long)n, buf, handled,
           show(&from, froml));
    printf("sender exit %d\n", wait_child(c));
    wake_fd = -1;
    close(p[0]);
    close(p[1]);
    CHECK(setsockopt(d, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    froml = sizeof from;
    n = recvfrom(d, buf, sizeof buf, 0, (struct sockaddr *)&from, &froml);
    printf("recvfrom with SO_RCVTIMEO: %s\n", n >= 0 ? "ok" : errname(errno));

    /* MSG_PEEK and MSG_TRUNC, and a short address buffer */
    int d2 = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sa;
    socklen_t salen = abstract_of(&sa, "a-sender-with-a-rather-long-name");
    CHECK(bind(d2, (struct sockaddr *)&sa, salen) == 0);
    CHECK(sendto(d2, "0123456789", 10, 0, (struct sockaddr *)&da, dalen) == 10);
    froml = sizeof from;
    memset(buf, 0, sizeof buf);
    n = recvfrom(d, buf, 4, MSG_PEEK | MSG_TRUNC, (struct sockaddr *)&from, &froml);
    printf("peek, truncated: %ld %s from %s\n", (long)n, buf, show(&from, froml));
    struct sockaddr_un small;
    memset(&small, 0x55, sizeof small);
    froml = offsetof(struct sockaddr_un, sun_path) + 5;
    memset(buf, 0, sizeof buf);
    n = recvfrom(d, buf, sizeof buf, 0, (struct sockaddr *)&small, &froml);
    printf("short address buffer: %ld %s, length %s, byte past the buffer untouched %d\n",
           (long)n, buf, froml == salen ? "full" : "wrong",
           (unsigned char)small.sun_path[5] == 0x55);
    close(d2);
    close(d);

    /* a long abstract name: 100 bytes, the most that keeps its own bytes on the host (see
     * unix_abstract_long.c for up to 107) */
    struct sockaddr_un lng = {.sun_family = AF_UNIX};
    memset(lng.sun_path + 1, 'n', 100);
    memcpy(lng.sun_path + 1, prefix, strlen(prefix));
    lng.sun_path[1 + strlen(prefix)] = '-';
    int big = socket(AF_UNIX, SOCK_DGRAM, 0);
    OK("bind a 100-byte abstract name", bind(big, (struct sockaddr *)&lng, offsetof(struct sockaddr_un, sun_path) + 101));
    int snd = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(sendto(snd, "L", 1, 0, (struct sockaddr *)&lng, offsetof(struct sockaddr_un, sun_path) + 101) == 1);
    close(snd);
    struct sockaddr_un got;
    socklen_t gl = sizeof got;
    CHECK(getsockname(big, (struct sockaddr *)&got, &gl) == 0);
    printf("its name read back: %d\n", gl == offsetof(struct sockaddr_un, sun_path) + 101 &&
                                           memcmp(&got, &lng, gl) == 0);
    close(big);

    /* TCP: accept with an address is the kernel's */
    int tl = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t lol = sizeof lo;
    CHECK(bind(tl, (struct sockaddr *)&lo, sizeof lo) == 0);
    CHECK(listen(tl, 1) == 0);
    CHECK(getsockname(tl, (struct sockaddr *)&lo, &lol) == 0);
    int tc = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(tc, (struct sockaddr *)&lo, sizeof lo) == 0);
    struct sockaddr_in mine, tpeer;
    socklen_t minel = sizeof mine, tpl = sizeof tpeer;
    CHECK(getsockname(tc, (struct sockaddr *)&mine, &minel) == 0);
    int ta = accept(tl, (struct sockaddr *)&tpeer, &tpl);
    printf("tcp accept: %s, the client's address %d\n", ta >= 0 ? "ok" : errname(errno),
           tpl == sizeof tpeer && tpeer.sin_port == mine.sin_port &&
               tpeer.sin_addr.s_addr == mine.sin_addr.s_addr);
    close(ta);
    close(tc);
    close(tl);
    return t_finish();
}
