/* socket() for IPv4, IPv6 and NETLINK_ROUTE (made by the supervisor on the host's network,
 * installed into the program): the lowest free descriptor, SOCK_NONBLOCK and SOCK_CLOEXEC,
 * and the kernel's errors for unknown flags, types and protocols. */
#include "common.h"
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/socket.h>

static void flags_of(const char *label, int fd)
{
    printf("%s: nonblock %d cloexec %d\n", label, (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0,
           (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    int a = OK("socket AF_INET stream", socket(AF_INET, SOCK_STREAM, 0));
    int b = OK("socket AF_INET6 datagram", socket(AF_INET6, SOCK_DGRAM, 0));
    flags_of("plain", a);
    close(a);
    int c = OK("socket AF_INET nonblock cloexec",
               socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
    printf("the lowest free descriptor: %d\n", c == a);
    flags_of("nonblock cloexec", c);
    int d = OK("socket NETLINK_ROUTE", socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
    flags_of("netlink", d);
    int type;
    socklen_t tl = sizeof type;
    CHECK(getsockopt(b, SOL_SOCKET, SO_TYPE, &type, &tl) == 0);
    printf("AF_INET6 socket's type is SOCK_DGRAM: %d\n", type == SOCK_DGRAM);
    ERR("unknown type flag", socket(AF_INET, SOCK_STREAM | 0x100000, 0), EINVAL);
    ERR("raw without a protocol", socket(AF_INET, SOCK_RAW, 0), EPROTONOSUPPORT);
    ERR("raw IPv6 without a protocol", socket(AF_INET6, SOCK_RAW, 0), EPROTONOSUPPORT);
    ERR("stream over UDP", socket(AF_INET, SOCK_STREAM, IPPROTO_UDP), EPROTONOSUPPORT);
    ERR("an unknown type", socket(AF_INET, 7, 0), ESOCKTNOSUPPORT);
    ERR("a negative protocol", socket(AF_INET6, SOCK_DGRAM, -1), EINVAL);
    return t_finish();
}
