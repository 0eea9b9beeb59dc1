/* The peer's address that accept, accept4, recvfrom and recvmsg report in an address buffer:
 * TCP over IPv4 and IPv6 (the client's address and port), UDP (the sender's), Unix stream
 * sockets (an abstract-named, a path-named and an unnamed client), Unix datagrams (an
 * abstract sender by recvfrom and recvmsg, a datagram sent by sendmsg to an abstract name),
 * and the length reported when the buffer is too small. */
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

union addr {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    struct sockaddr_un un;
    struct sockaddr_storage ss;
};

static char prefix[64];

static socklen_t abstract_of(struct sockaddr_un *a, const char *suffix)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "%s-%s", prefix, suffix);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

static socklen_t path_of(struct sockaddr_un *a, const char *path)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof a->sun_path, "%s", path);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
}

/* A Unix address as the test named it: "unnamed", "path NAME", "abstract <test>-SUFFIX" or
 * "abstract (N bytes, not as bound)", with whether the length is the kernel's for it. */
static const char *show_un(const union addr *a, socklen_t len)
{
    static char s[200];
    size_t head = offsetof(struct sockaddr_un, sun_path);
    if (len == 0)
        return "no address (length 0)";
    if (len < head || a->un.sun_family != AF_UNIX)
        return "not AF_UNIX";
    size_t n = len - head;
    if (n == 0)
        return "unnamed";
    if (a->un.sun_path[0] != 0) {
        snprintf(s, sizeof s, "path %s, length counts the NUL %d", a->un.sun_path,
                 n == strlen(a->un.sun_path) + 1);
        return s;
    }
    size_t k = strlen(prefix);
    if (n - 1 > k && memcmp(a->un.sun_path + 1, prefix, k) == 0)
        snprintf(s, sizeof s, "abstract <test>%.*s", (int)(n - 1 - k), a->un.sun_path + 1 + k);
    else
        snprintf(s, sizeof s, "abstract (%zu bytes, not as bound)", n - 1);
    return s;
}

static int port_of(const union addr *a)
{
    return ntohs(a->sa.sa_family == AF_INET ? a->in4.sin_port : a->in6.sin6_port);
}

static const char *host_of(const union addr *a)
{
    static char s[64];
    if (a->sa.sa_family == AF_INET)
        inet_ntop(AF_INET, &a->in4.sin_addr, s, sizeof s);
    else if (a->sa.sa_family == AF_INET6)
        inet_ntop(AF_INET6, &a->in6.sin6_addr, s, sizeof s);
    else
        snprintf(s, sizeof s, "family %d", a->sa.sa_family);
    return s;
}

static void tcp(int family, const char *name)
{
    union addr srv = {0}, cli, peer;
    socklen_t sl = family == AF_INET ? sizeof srv.in4 : sizeof srv.in6;
    srv.sa.sa_family = (sa_family_t)family;
    if (family == AF_INET)
        srv.in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else
        srv.in6.sin6_addr = in6addr_loopback;
    int l = socket(family, SOCK_STREAM, 0);
    CHECK(bind(l, &srv.sa, sl) == 0 && listen(l, 4) == 0);
    CHECK(getsockname(l, &srv.sa, &sl) == 0);
    for (int round = 0; round < 2; round++) {
        int c = socket(family, SOCK_STREAM, 0);
        CHECK(connect(c, &srv.sa, sl) == 0);
        socklen_t cl = sizeof cli;
        CHECK(getsockname(c, &cli.sa, &cl) == 0);
        socklen_t pl = sizeof peer;
        memset(&peer, 0xAA, sizeof peer);
        int s = round == 0 ? accept(l, &peer.sa, &pl) : accept4(l, &peer.sa, &pl, SOCK_CLOEXEC);
        printf("%s %s: %s, from %s, the client's port %d, length %s\n", name,
               round == 0 ? "accept" : "accept4", s >= 0 ? "ok" : errname(errno), host_of(&peer),
               port_of(&peer) == port_of(&cli), pl == cl ? "the client's" : "other");
        if (round == 1)
            printf("%s accept4 cloexec: %d\n", name, (fcntl(s, F_GETFD) & FD_CLOEXEC) != 0);
        close(s);
        close(c);
    }
    /* a buffer too small: cut, and the full length reported */
    int c = socket(family, SOCK_STREAM, 0);
    CHECK(connect(c, &srv.sa, sl) == 0);
    socklen_t pl = 4;
    memset(&peer, 0, sizeof peer);
    int s = accept(l, &peer.sa, &pl);
    printf("%s accept into 4 bytes: %s, length %d, family %d\n", name, s >= 0 ? "ok" : errname(errno),
           (int)pl, peer.sa.sa_family == family);
    close(s);
    close(c);
    close(l);
}

static void udp(int family, const char *name)
{
    union addr a = {0}, b, from;
    socklen_t al = family == AF_INET ? sizeof a.in4 : sizeof a.in6;
    a.sa.sa_family = (sa_family_t)family;
    if (family == AF_INET)
        a.in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else
        a.in6.sin6_addr = in6addr_loopback;
    memcpy(&b, &a, sizeof a);
    int sa = socket(family, SOCK_DGRAM, 0), sb = socket(family, SOCK_DGRAM, 0);
    socklen_t bl = al;
    CHECK(bind(sa, &a.sa, al) == 0 && getsockname(sa, &a.sa, &al) == 0);
    CHECK(bind(sb, &b.sa, bl) == 0 && getsockname(sb, &b.sa, &bl) == 0);
    CHECK(sendto(sb, "one", 3, 0, &a.sa, al) == 3);
    CHECK(sendto(sb, "two", 3, 0, &a.sa, al) == 3);
    char buf[16] = {0};
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(sa, buf, sizeof buf, 0, &from.sa, &fl);
    printf("%s recvfrom: %ld %.3s from %s, the sender's port %d, length %d\n", name, (long)n, buf,
           host_of(&from), port_of(&from) == port_of(&b), fl == bl);
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
    memset(&from, 0, sizeof from);
    struct msghdr m = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1};
    n = recvmsg(sa, &m, 0);
    printf("%s recvmsg: %ld %.3s from %s, the sender's port %d, length %d\n", name, (long)n, buf,
           host_of(&from), port_of(&from) == port_of(&b), m.msg_namelen == bl);
    close(sa);
    close(sb);
}

/* A Unix stream client named by `bind_client` (or unnamed), accepted with an address. */
static void unix_stream(int l, const union addr *srv, socklen_t sl, const char *what,
                        const union addr *cname, socklen_t cnl)
{
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (cname)
        CHECK(bind(c, &cname->sa, cnl) == 0);
    CHECK(connect(c, &srv->sa, sl) == 0);
    union addr peer;
    memset(&peer, 0xAA, sizeof peer);
    socklen_t pl = sizeof peer;
    int s = accept(l, &peer.sa, &pl);
    printf("unix accept, %s client: %s, %s\n", what, s >= 0 ? "ok" : errname(errno), show_un(&peer, pl));
    close(s);
    memset(&peer, 0xAA, sizeof peer);
    pl = sizeof peer;
    int c2 = socket(AF_UNIX, SOCK_STREAM, 0);
    if (cname) {
        /* the same name again is taken: bind a sibling name for the accept4 round */
        union addr other = *cname;
        if (other.un.sun_path[0] == 0)
            other.un.sun_path[cnl - offsetof(struct sockaddr_un, sun_path) - 1] = '2';
        else
            other.un.sun_path[strlen(other.un.sun_path) - 1] = '2';
        CHECK(bind(c2, &other.sa, cnl) == 0);
    }
    CHECK(connect(c2, &srv->sa, sl) == 0);
    s = accept4(l, &peer.sa, &pl, SOCK_NONBLOCK);
    printf("unix accept4, %s client: %s, %s, nonblock %d\n", what, s >= 0 ? "ok" : errname(errno),
           show_un(&peer, pl), (fcntl(s, F_GETFL) & O_NONBLOCK) != 0);
    close(s);
    close(c);
    close(c2);
}

static void unix_streams(void)
{
    union addr srv, cname;
    socklen_t sl = abstract_of(&srv.un, "server");
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(l, &srv.sa, sl) == 0 && listen(l, 4) == 0);
    socklen_t cnl = abstract_of(&cname.un, "client1");
    unix_stream(l, &srv, sl, "abstract-named", &cname, cnl);
    cnl = path_of(&cname.un, "client1");
    unix_stream(l, &srv, sl, "path-named", &cname, cnl);
    unix_stream(l, &srv, sl, "unnamed", NULL, 0);
    close(l);
    /* a server on a path, reported back to its client by getpeername */
    union addr psrv, got;
    socklen_t psl = path_of(&psrv.un, "server.sock");
    l = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(l, &psrv.sa, psl) == 0 && listen(l, 4) == 0);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(connect(c, &psrv.sa, psl) == 0);
    socklen_t gl = sizeof got;
    CHECK(getpeername(c, &got.sa, &gl) == 0);
    printf("unix getpeername of a path server: %s\n", show_un(&got, gl));
    int s = accept(l, NULL, NULL);
    gl = sizeof got;
    CHECK(getpeername(s, &got.sa, &gl) == 0);
    printf("unix getpeername of an unnamed client: %s\n", show_un(&got, gl));
    close(s);
    close(c);
    close(l);
}

static void unix_datagrams(void)
{
    union addr r, snd, from;
    socklen_t rl = abstract_of(&r.un, "dgram-receiver");
    socklen_t sdl = abstract_of(&snd.un, "dgram-sender");
    int dr = socket(AF_UNIX, SOCK_DGRAM, 0), ds = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(bind(dr, &r.sa, rl) == 0);
    CHECK(bind(ds, &snd.sa, sdl) == 0);
    OK("sendto an abstract name", sendto(ds, "one", 3, 0, &r.sa, rl));
    struct iovec iov = {.iov_base = "two", .iov_len = 3};
    struct msghdr m = {.msg_name = &r, .msg_namelen = rl, .msg_iov = &iov, .msg_iovlen = 1};
    OK("sendmsg to an abstract name", sendmsg(ds, &m, 0));
    char buf[16] = {0};
    socklen_t fl = sizeof from;
    memset(&from, 0xAA, sizeof from);
    ssize_t n = recvfrom(dr, buf, sizeof buf, MSG_DONTWAIT, &from.sa, &fl);
    printf("unix recvfrom: %ld %.3s from %s\n", (long)n, buf, show_un(&from, fl));
    memset(&from, 0xAA, sizeof from);
    struct iovec in = {.iov_base = buf, .iov_len = sizeof buf};
    struct msghdr rm = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &in, .msg_iovlen = 1};
    n = recvmsg(dr, &rm, MSG_DONTWAIT);
    printf("unix recvmsg: %ld %.3s from %s\n", (long)n, buf, show_un(&from, rm.msg_namelen));
    /* a path-named sender, and an unnamed one */
    union addr ps;
    socklen_t psl = path_of(&ps.un, "sender.sock");
    int dp = socket(AF_UNIX, SOCK_DGRAM, 0), du = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(bind(dp, &ps.sa, psl) == 0);
    CHECK(sendto(dp, "thr", 3, 0, &r.sa, rl) == 3);
    CHECK(sendto(du, "fou", 3, 0, &r.sa, rl) == 3);
    for (int i = 0; i < 2; i++) {
        fl = sizeof from;
        memset(&from, 0xAA, sizeof from);
        n = recvfrom(dr, buf, sizeof buf, MSG_DONTWAIT, &from.sa, &fl);
        printf("unix recvfrom: %ld %.3s from %s\n", (long)n, buf, show_un(&from, fl));
    }
    close(dr);
    close(ds);
    close(dp);
    close(du);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    /* names unique to this run: the abstract namespace is shared by a network namespace */
    snprintf(prefix, sizeof prefix, "occlum-peer-%d", (int)getpid());
    tcp(AF_INET, "tcp4");
    tcp(AF_INET6, "tcp6");
    udp(AF_INET, "udp4");
    udp(AF_INET6, "udp6");
    unix_streams();
    unix_datagrams();
    return t_finish();
}
