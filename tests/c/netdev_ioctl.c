/* The network device requests a program makes on a Unix socket (as glibc's if_nametoindex and
 * if_indextoname do) see the same interfaces as its IPv4 sockets and NETLINK_ROUTE
 * (if_nameindex): names and indexes agree, loopback is up, SIOCGIFCONF lists as much; the
 * family's own errors (SIOCGIFADDR on a Unix socket) and a missing device stay. */
#include "common.h"
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

static int ifconf_len(int s)
{
    struct ifconf ifc = {0};
    if (ioctl(s, SIOCGIFCONF, &ifc) != 0)
        return -1;
    int asked = ifc.ifc_len;
    char buf[8192];
    ifc.ifc_len = sizeof buf;
    ifc.ifc_buf = buf;
    if (ioctl(s, SIOCGIFCONF, &ifc) != 0)
        return -1;
    return ifc.ifc_len == asked ? ifc.ifc_len : -2;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    int u = socket(AF_UNIX, SOCK_DGRAM, 0), in = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(u >= 0 && in >= 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    OK("SIOCGIFFLAGS lo on a Unix socket", ioctl(u, SIOCGIFFLAGS, &ifr));
    printf("lo is up: %d\n", (ifr.ifr_flags & IFF_UP) != 0);
    struct if_nameindex *all = if_nameindex();
    CHECK(all != NULL);
    int n = 0, alike = 0;
    for (struct if_nameindex *i = all; i && i->if_index; i++, n++) {
        char name[IF_NAMESIZE] = {0};
        if (if_nametoindex(i->if_name) == i->if_index && if_indextoname(i->if_index, name) &&
            strcmp(name, i->if_name) == 0)
            alike++;
    }
    if_freenameindex(all);
    printf("interfaces named and numbered alike: %d\n", n > 0 && alike == n);
    int lu = ifconf_len(u), li = ifconf_len(in);
    printf("SIOCGIFCONF lists as much on a Unix socket as on an IPv4 one: %d\n", lu > 0 && lu == li);
    ERR("SIOCGIFADDR on a Unix socket", ioctl(u, SIOCGIFADDR, &ifr), ENOTTY);
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "nosuchif0");
    ERR("SIOCGIFINDEX of no device", ioctl(u, SIOCGIFINDEX, &ifr), ENODEV);
    int f = open("file", O_CREAT | O_RDWR, 0600);
    ERR("SIOCGIFINDEX on a file", ioctl(f, SIOCGIFINDEX, &ifr), ENOTTY);
    return t_finish();
}
