/* Abstract Unix socket names of every length Linux allows, up to 107 bytes: bind, connect,
 * the names getsockname, getpeername and accept report, EADDRINUSE, and datagrams whose
 * sender recvfrom names. */
#include "common.h"
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

/* An abstract name of len bytes (after the NUL), unique to this test run. */
static socklen_t long_name(struct sockaddr_un *a, int len, char tag)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    char *p = a->sun_path + 1;
    int n = snprintf(p, 64, "occlum-long-%c-%d-", tag, (int)getpid());
    for (int i = n; i < len; i++)
        p[i] = (char)('a' + i % 26);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
}

static int same(const struct sockaddr_un *a, socklen_t al, const struct sockaddr_un *b, socklen_t bl)
{
    return al == bl && memcmp(a, b, al) == 0;
}

static void stream(int len)
{
    struct sockaddr_un a, got;
    socklen_t al = long_name(&a, len, 's'), gl = sizeof got;
    int srv = socket(AF_UNIX, SOCK_STREAM, 0);
    int bound = bind(srv, (struct sockaddr *)&a, al);
    printf("stream name of %d bytes: bind %s", len, bound == 0 ? "ok" : errname(errno));
    CHECK(bound == 0);
    CHECK(listen(srv, 4) == 0);
    CHECK(getsockname(srv, (struct sockaddr *)&got, &gl) == 0);
    printf(", getsockname same %d", same(&a, al, &got, gl));
    int again = socket(AF_UNIX, SOCK_STREAM, 0);
    errno = 0;
    printf(", bind again %s", bind(again, (struct sockaddr *)&a, al) == 0 ? "ok" : errname(errno));
    close(again);
    int cli = socket(AF_UNIX, SOCK_STREAM, 0);
    int c = connect(cli, (struct sockaddr *)&a, al);
    printf(", connect %s", c == 0 ? "ok" : errname(errno));
    CHECK(c == 0);
    gl = sizeof got;
    CHECK(getpeername(cli, (struct sockaddr *)&got, &gl) == 0);
    printf(", getpeername same %d", same(&a, al, &got, gl));
    gl = sizeof got;
    int conn = accept(srv, (struct sockaddr *)&got, &gl);
    CHECK(conn >= 0);
    printf(", accepted client unnamed %d", gl == offsetof(struct sockaddr_un, sun_path));
    gl = sizeof got;
    CHECK(getsockname(conn, (struct sockaddr *)&got, &gl) == 0);
    printf(", accepted socket's name same %d\n", same(&a, al, &got, gl));
    close(conn);
    close(cli);
    close(srv);
}

static void datagram(int len)
{
    struct sockaddr_un r, s, from;
    socklen_t rl = long_name(&r, len, 'r'), sl = long_name(&s, len, 'w'), fl = sizeof from;
    int rx = socket(AF_UNIX, SOCK_DGRAM, 0), tx = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(bind(rx, (struct sockaddr *)&r, rl) == 0);
    CHECK(bind(tx, (struct sockaddr *)&s, sl) == 0);
    ssize_t sent = sendto(tx, "hi", 2, 0, (struct sockaddr *)&r, rl);
    CHECK(sent == 2);
    struct pollfd pf = {.fd = rx, .events = POLLIN};
    poll(&pf, 1, 1000);
    char buf[8];
    ssize_t n = recvfrom(rx, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
    printf("datagram names of %d bytes: sent %ld, received %ld, sender named %d\n", len,
           (long)sent, (long)n, same(&s, sl, &from, fl));
    close(rx);
    close(tx);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    int lens[] = {40, 100, 101, 106, 107};
    for (unsigned i = 0; i < sizeof lens / sizeof *lens; i++)
        stream(lens[i]);
    datagram(100);
    datagram(107);
    struct sockaddr_un a;
    long_name(&a, 107, 'x');
    ERR("108 bytes", bind(socket(AF_UNIX, SOCK_STREAM, 0), (struct sockaddr *)&a, sizeof a + 1), EINVAL);
    return t_finish();
}
