/* A TCP server and its clients in one process: 20 connections accepted with the client's
 * address (accept and accept4, alternately), then 5 UDP datagrams received with the sender's
 * (recvfrom and recvmsg). Prints what it accepted and received. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
    struct sockaddr_in srv = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof srv;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&srv, sl) != 0 || listen(l, 32) != 0 ||
        getsockname(l, (struct sockaddr *)&srv, &sl) != 0) {
        printf("listen: %s\n", strerror(errno));
        return 1;
    }
    int accepted = 0;
    for (int i = 0; i < 20; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in me, peer;
        socklen_t ml = sizeof me, pl = sizeof peer;
        if (connect(c, (struct sockaddr *)&srv, sl) != 0 || getsockname(c, (struct sockaddr *)&me, &ml) != 0)
            return 1;
        int s = i % 2 ? accept4(l, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC)
                      : accept(l, (struct sockaddr *)&peer, &pl);
        if (s >= 0 && pl == sizeof peer && peer.sin_port == me.sin_port)
            accepted++;
        close(s);
        close(c);
    }
    struct sockaddr_in a = srv, b = srv;
    a.sin_port = b.sin_port = 0;
    socklen_t al = sizeof a, bl = sizeof b;
    int ua = socket(AF_INET, SOCK_DGRAM, 0), ub = socket(AF_INET, SOCK_DGRAM, 0);
    if (bind(ua, (struct sockaddr *)&a, al) != 0 || getsockname(ua, (struct sockaddr *)&a, &al) != 0 ||
        bind(ub, (struct sockaddr *)&b, bl) != 0 || getsockname(ub, (struct sockaddr *)&b, &bl) != 0)
        return 1;
    int received = 0;
    for (int i = 0; i < 5; i++) {
        char buf[8];
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        if (sendto(ub, "ping", 4, 0, (struct sockaddr *)&a, al) != 4)
            return 1;
        ssize_t n;
        if (i % 2) {
            struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
            struct msghdr m = {.msg_name = &from, .msg_namelen = fl, .msg_iov = &iov, .msg_iovlen = 1};
            n = recvmsg(ua, &m, 0);
        } else {
            n = recvfrom(ua, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        }
        if (n == 4 && from.sin_port == b.sin_port)
            received++;
    }
    printf("accepted %d, received %d\n", accepted, received);
    return accepted == 20 && received == 5 ? 0 : 1;
}
