/* UDP on loopback, IPv4 and IPv6: sendto/recvfrom with the sender's address, datagram
 * boundaries, MSG_PEEK and MSG_TRUNC, connected UDP (send/recv, peer filtering, ECONNREFUSED
 * from an ICMP port unreachable), between two processes, and EDESTADDRREQ. */
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
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

/* A UDP socket bound to the loopback address of family, ephemeral port. */
static int bound(int family, union addr *a, socklen_t *len)
{
    int s = socket(family, SOCK_DGRAM, 0);
    *len = loopback(a, family, 0);
    if (bind(s, &a->sa, *len) != 0)
        return -1;
    socklen_t gl = sizeof *a;
    getsockname(s, &a->sa, &gl);
    return s;
}

static void round_trip(int family, const char *name)
{
    union addr a, b, from;
    socklen_t alen, blen, fl;
    int sa = bound(family, &a, &alen), sb = bound(family, &b, &blen);
    printf("%s bound: %d, ports nonzero and distinct %d\n", name, sa >= 0 && sb >= 0,
           port_of(&a) && port_of(&b) && port_of(&a) != port_of(&b));
    CHECK(sendto(sb, "first", 5, 0, &a.sa, alen) == 5);
    CHECK(sendto(sb, "second!", 7, 0, &a.sa, alen) == 7);
    CHECK(sendto(sb, "", 0, 0, &a.sa, alen) == 0);
    char buf[64] = {0};
    fl = sizeof from;
    ssize_t n = recvfrom(sa, buf, sizeof buf, MSG_PEEK, &from.sa, &fl);
    printf("%s peek: %ld %s\n", name, (long)n, buf);
    memset(buf, 0, sizeof buf);
    fl = sizeof from;
    n = recvfrom(sa, buf, sizeof buf, 0, &from.sa, &fl);
    printf("%s recvfrom: %ld %s from %s, the sender's port %d\n", name, (long)n, buf, host_of(&from),
           port_of(&from) == port_of(&b));
    memset(buf, 0, sizeof buf);
    n = recv(sa, buf, 3, MSG_TRUNC);
    printf("%s truncated: real length %ld, kept %s\n", name, (long)n, buf);
    n = recv(sa, buf, sizeof buf, 0);
    printf("%s empty datagram: %ld\n", name, (long)n);
    n = recv(sa, buf, sizeof buf, MSG_DONTWAIT);
    printf("%s nothing left: %s\n", name, n < 0 ? errname(errno) : "data");

    /* connected: send/recv without addresses; datagrams from others are filtered */
    OK("  connect", connect(sb, &a.sa, alen));
    union addr peer;
    socklen_t pl = sizeof peer;
    CHECK(getpeername(sb, &peer.sa, &pl) == 0);
    printf("%s peer port is a's: %d\n", name, port_of(&peer) == port_of(&a));
    CHECK(send(sb, "conn", 4, 0) == 4);
    memset(buf, 0, sizeof buf);
    CHECK(recv(sa, buf, sizeof buf, 0) == 4);
    printf("%s connected send: %s\n", name, buf);
    union addr c;
    socklen_t clen;
    int sc = bound(family, &c, &clen);
    CHECK(sendto(sc, "stranger", 8, 0, &b.sa, blen) == 8);
    CHECK(sendto(sa, "reply", 5, 0, &b.sa, blen) == 5);
    memset(buf, 0, sizeof buf);
    n = recv(sb, buf, sizeof buf, 0);
    printf("%s connected socket got: %s (the stranger's filtered)\n", name, buf);
    close(sc);

    /* the peer goes away: ICMP port unreachable turns into ECONNREFUSED */
    close(sa);
    CHECK(send(sb, "lost", 4, 0) == 4);
    struct pollfd pf = {sb, POLLIN, 0};
    poll(&pf, 1, 1000);
    n = recv(sb, buf, sizeof buf, MSG_DONTWAIT);
    printf("%s after the peer closed: %s\n", name, n < 0 ? errname(errno) : "data");
    /* disconnect with AF_UNSPEC */
    union addr un;
    memset(&un, 0, sizeof un);
    un.sa.sa_family = AF_UNSPEC;
    OK("  disconnect", connect(sb, &un.sa, sizeof un.sa));
    ERR("  send when not connected", send(sb, "x", 1, 0), EDESTADDRREQ);
    close(sb);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    round_trip(AF_INET, "v4");
    round_trip(AF_INET6, "v6");

    /* between processes: a child echoes one datagram */
    union addr a;
    socklen_t alen;
    int s = bound(AF_INET, &a, &alen);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        union addr me, from;
        socklen_t ml, fl = sizeof from;
        int e = bound(AF_INET, &me, &ml);
        sendto(e, "ready", 5, 0, &a.sa, alen);
        char b[64];
        ssize_t n = recvfrom(e, b, sizeof b, 0, &from.sa, &fl);
        for (ssize_t i = 0; i < n; i++)
            b[i] = b[i] >= 'a' && b[i] <= 'z' ? b[i] - 32 : b[i];
        sendto(e, b, n, 0, &from.sa, fl);
        _exit(0);
    }
    union addr child;
    socklen_t cl = sizeof child;
    char buf[64] = {0};
    CHECK(recvfrom(s, buf, sizeof buf, 0, &child.sa, &cl) == 5);
    CHECK(sendto(s, "echo me", 7, 0, &child.sa, cl) == 7);
    memset(buf, 0, sizeof buf);
    CHECK(recv(s, buf, sizeof buf, 0) == 7);
    printf("child echoed: %s, child %d\n", buf, wait_child(c));
    close(s);

    /* errors */
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    ERR("send unconnected", send(u, "x", 1, 0), EDESTADDRREQ);
    union addr v6;
    socklen_t v6l = loopback(&v6, AF_INET6, 9);
    ERR("sendto a v6 address on a v4 socket", sendto(u, "x", 1, 0, &v6.sa, v6l), EAFNOSUPPORT);
    union addr bad;
    loopback(&bad, AF_INET, 9);
    bad.v4.sin_addr.s_addr = htonl(0x01020304); /* not a local address */
    ERR("bind a non-local address", bind(u, &bad.sa, sizeof bad.v4), EADDRNOTAVAIL);
    union addr taken;
    socklen_t tl;
    int t = bound(AF_INET, &taken, &tl);
    int u2 = socket(AF_INET, SOCK_DGRAM, 0);
    ERR("bind a taken port", bind(u2, &taken.sa, tl), EADDRINUSE);
    close(u2);
    close(t);
    close(u);
    return t_finish();
}
