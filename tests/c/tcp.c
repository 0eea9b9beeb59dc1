/* TCP on loopback, IPv4 (127.0.0.1) and IPv6 (::1): an ephemeral port from bind to port 0 and
 * getsockname, a client in a forked child, echo, shutdown(SHUT_WR) seen as EOF, EADDRINUSE
 * and SO_REUSEADDR, ECONNREFUSED, non-blocking connect and accept, socket options. */
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

union addr {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
    struct sockaddr_storage ss;
};

static socklen_t loopback(union addr *a, int family, int port)
{
    memset(a, 0, sizeof *a);
    if (family == AF_INET) {
        a->v4.sin_family = AF_INET;
        a->v4.sin_port = htons(port);
        a->v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return sizeof a->v4;
    }
    a->v6.sin6_family = AF_INET6;
    a->v6.sin6_port = htons(port);
    a->v6.sin6_addr = in6addr_loopback;
    return sizeof a->v6;
}

static int port_of(const union addr *a)
{
    return ntohs(a->sa.sa_family == AF_INET ? a->v4.sin_port : a->v6.sin6_port);
}

static const char *host_of(const union addr *a)
{
    static char s[64];
    if (a->sa.sa_family == AF_INET)
        inet_ntop(AF_INET, &a->v4.sin_addr, s, sizeof s);
    else
        inet_ntop(AF_INET6, &a->v6.sin6_addr, s, sizeof s);
    return s;
}

/* A listener on the loopback address of family with an ephemeral port; *a gets its address. */
static int listener(int family, union addr *a, socklen_t *len)
{
    int l = socket(family, SOCK_STREAM, 0);
    *len = loopback(a, family, 0);
    if (bind(l, &a->sa, *len) != 0 || listen(l, 8) != 0)
        return -1;
    socklen_t gl = sizeof *a;
    getsockname(l, &a->sa, &gl);
    return l;
}

static void echo_round(int family, const char *name)
{
    union addr a;
    socklen_t len;
    int l = listener(family, &a, &len);
    printf("%s listener: %s, ephemeral port nonzero %d, address %s\n", name, l >= 0 ? "ok" : errname(errno),
           port_of(&a) != 0, host_of(&a));
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        /* the client: send, shut down writing, read the echo to EOF */
        int s = socket(family, SOCK_STREAM, 0);
        if (connect(s, &a.sa, len) != 0)
            _exit(100);
        const char *msg = "hello over tcp";
        send(s, msg, strlen(msg), 0);
        shutdown(s, SHUT_WR);
        char buf[64] = {0};
        size_t got = 0;
        ssize_t n;
        while ((n = recv(s, buf + got, sizeof buf - 1 - got, 0)) > 0)
            got += n;
        _exit(got == strlen(msg) && memcmp(buf, "HELLO OVER TCP", got) == 0 ? 0 : 101);
    }
    union addr peer;
    socklen_t pl = sizeof peer;
    int s = accept(l, &peer.sa, &pl);
    printf("%s accept: %s, peer %s, peer port differs %d\n", name, s >= 0 ? "ok" : errname(errno),
           host_of(&peer), port_of(&peer) != port_of(&a));
    char buf[64];
    size_t got = 0;
    ssize_t n;
    while ((n = recv(s, buf + got, sizeof buf - got, 0)) > 0)
        got += n;
    printf("%s server read %zu bytes, then EOF %ld\n", name, got, (long)n);
    for (size_t i = 0; i < got; i++)
        buf[i] = buf[i] >= 'a' && buf[i] <= 'z' ? buf[i] - 32 : buf[i];
    CHECK(send(s, buf, got, 0) == (ssize_t)got);
    shutdown(s, SHUT_WR);
    printf("%s client: %d\n", name, wait_child(c));
    union addr local;
    socklen_t ll = sizeof local;
    CHECK(getsockname(s, &local.sa, &ll) == 0);
    printf("%s accepted socket's port is the listener's: %d\n", name, port_of(&local) == port_of(&a));
    close(s);

    /* EADDRINUSE on the listening port; SO_REUSEADDR does not help against a listener */
    int x = socket(family, SOCK_STREAM, 0);
    ERR("  bind the listening port", bind(x, &a.sa, len), EADDRINUSE);
    int one = 1;
    setsockopt(x, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ERR("  same with SO_REUSEADDR", bind(x, &a.sa, len), EADDRINUSE);
    close(x);
    close(l);

    /* refused once nobody listens */
    x = socket(family, SOCK_STREAM, 0);
    ERR("  connect to the closed port", connect(x, &a.sa, len), ECONNREFUSED);
    close(x);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    echo_round(AF_INET, "v4");
    echo_round(AF_INET6, "v6");

    /* SO_REUSEADDR: rebinding a port whose connection is in TIME_WAIT (both the old and the
     * new socket must ask for it, as a restarted server does) */
    union addr a;
    socklen_t len = loopback(&a, AF_INET, 0);
    int one = 1;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    CHECK(bind(l, &a.sa, len) == 0 && listen(l, 2) == 0);
    socklen_t al = sizeof a;
    getsockname(l, &a.sa, &al);
    int cl = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(cl, &a.sa, len) == 0);
    int s = accept(l, NULL, NULL);
    close(s); /* the server closes first: its side goes to TIME_WAIT */
    char b;
    CHECK(recv(cl, &b, 1, 0) == 0);
    close(cl);
    close(l);
    usleep(10000);
    int x = socket(AF_INET, SOCK_STREAM, 0);
    ERR("rebind a TIME_WAIT port without SO_REUSEADDR", bind(x, &a.sa, len), EADDRINUSE);
    close(x);
    x = socket(AF_INET, SOCK_STREAM, 0);
    OK("SO_REUSEADDR", setsockopt(x, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
    OK("rebind with SO_REUSEADDR", bind(x, &a.sa, len));
    close(x);

    /* an IPv6 socket with IPV6_V6ONLY off accepts an IPv4 client as a mapped address */
    int l6 = socket(AF_INET6, SOCK_STREAM, 0);
    int zero = 0;
    setsockopt(l6, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    union addr any6;
    memset(&any6, 0, sizeof any6);
    any6.v6.sin6_family = AF_INET6;
    any6.v6.sin6_addr = in6addr_any;
    CHECK(bind(l6, &any6.sa, sizeof any6.v6) == 0 && listen(l6, 2) == 0);
    socklen_t gl = sizeof any6;
    getsockname(l6, &any6.sa, &gl);
    union addr to4;
    socklen_t t4 = loopback(&to4, AF_INET, port_of(&any6));
    cl = socket(AF_INET, SOCK_STREAM, 0);
    OK("v4 client to a dual-stack listener", connect(cl, &to4.sa, t4));
    union addr peer;
    socklen_t pl = sizeof peer;
    s = accept(l6, &peer.sa, &pl);
    printf("peer seen as %s\n", host_of(&peer));
    close(s);
    close(cl);
    close(l6);

    /* non-blocking connect and accept */
    l = listener(AF_INET, &a, &len);
    int fl;
    fl = fcntl(l, F_GETFL);
    fcntl(l, F_SETFL, fl | O_NONBLOCK);
    ERR("accept with nobody waiting", accept(l, NULL, NULL), EAGAIN);
    cl = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int r = connect(cl, &a.sa, len);
    printf("non-blocking connect: %s\n", r == 0 ? "ok" : errname(errno));
    struct pollfd pf = {cl, POLLOUT, 0};
    printf("writable when connected: %d\n", poll(&pf, 1, 2000));
    int err = -1;
    socklen_t el = sizeof err;
    getsockopt(cl, SOL_SOCKET, SO_ERROR, &err, &el);
    printf("SO_ERROR: %s\n", errname(err));
    pf = (struct pollfd){l, POLLIN, 0};
    CHECK(poll(&pf, 1, 2000) == 1);
    s = accept4(l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    printf("accept4 flags: cloexec %d nonblock %d\n", (fcntl(s, F_GETFD) & FD_CLOEXEC) != 0,
           (fcntl(s, F_GETFL) & O_NONBLOCK) != 0);
    char buf[16];
    ERR("recv with nothing sent", recv(s, buf, sizeof buf, 0), EAGAIN);

    /* options */
    int v = 0;
    socklen_t vl = sizeof v;
    OK("TCP_NODELAY", setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
    getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &vl);
    printf("TCP_NODELAY read back: %d\n", v != 0);
    vl = sizeof v;
    getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &vl);
    printf("SO_TYPE stream: %d\n", v == SOCK_STREAM);
    vl = sizeof v;
    getsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl);
    printf("SO_ACCEPTCONN on the listener: %d\n", v);
    /* the peer closes: send gets EPIPE eventually (RST after the first write) */
    close(cl);
    usleep(10000);
    ssize_t w1 = send(s, "a", 1, 0);
    usleep(10000);
    ssize_t w2 = send(s, "b", 1, 0);
    int e2 = errno;
    printf("send after the peer closed: first %ld, then %s\n", (long)w1, w2 < 0 ? errname(e2) : "ok");
    close(s);
    close(l);

    ERR("connect a v4 socket to a v6 address", connect(socket(AF_INET, SOCK_STREAM, 0), &any6.sa, sizeof any6.v6),
        EAFNOSUPPORT);
    ERR("listen on a UDP socket", listen(socket(AF_INET, SOCK_DGRAM, 0), 1), EOPNOTSUPP);
    ERR("socket with a bad protocol", socket(AF_INET, SOCK_STREAM, IPPROTO_UDP), EPROTONOSUPPORT);
    return t_finish();
}
