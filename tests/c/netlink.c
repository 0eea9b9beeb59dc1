/* Netlink: NETLINK_ROUTE answers (the loopback interface is listed); a family the kernel
 * does not have gives EPROTONOSUPPORT, a netlink socketpair EOPNOTSUPP. */
#include "common.h"
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

static char buf[1 << 16];

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    int s = OK("socket NETLINK_ROUTE", socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
    struct {
        struct nlmsghdr h;
        struct ifinfomsg i;
    } req = {
        .h = {.nlmsg_len = sizeof req, .nlmsg_type = RTM_GETLINK,
              .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1},
        .i = {.ifi_family = AF_UNSPEC},
    };
    OK("send RTM_GETLINK dump", send(s, &req, sizeof req, 0));
    int loopback = 0;
    for (int done = 0; !done;) {
        ssize_t n = recv(s, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
                done = 1;
                break;
            }
            struct ifinfomsg *i = NLMSG_DATA(h);
            if (i->ifi_flags & IFF_LOOPBACK)
                loopback = 1;
        }
    }
    printf("loopback listed: %d\n", loopback);
    CHECK(loopback);
    close(s);
    ERR("socket of a family the kernel lacks", socket(AF_NETLINK, SOCK_RAW, 31), EPROTONOSUPPORT);
    ERR("socket of protocol 32", socket(AF_NETLINK, SOCK_RAW, 32), EPROTONOSUPPORT);
    int sv[2];
    ERR("socketpair AF_NETLINK", socketpair(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE, sv), EOPNOTSUPP);
    return t_finish();
}
