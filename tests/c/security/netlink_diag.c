/* Netlink families that show host state stay closed on the host's network: a socket-diag
 * dump of Unix sockets would list every host Unix socket with its name (the test harness,
 * HOSTPID, binds "occlum-sec-dgram-<pid>" and "occlum-sec-stream-<pid>"), the process-events
 * connector reports every host process's fork and exit, and generic netlink's taskstats
 * answers for host pids. */
#include "sec.h"
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/taskstats.h>
#include <linux/unix_diag.h>
#include <poll.h>
#include <sys/socket.h>

static char buf[1 << 16];

/* Wait up to ms for a reply; its length, or -1. */
static ssize_t reply(int s, int ms)
{
    struct pollfd p = {.fd = s, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0)
        return -1;
    return recv(s, buf, sizeof buf, 0);
}

static void unix_dump(void)
{
    const char *label = "NETLINK_SOCK_DIAG dump of Unix sockets";
    int s = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (s < 0) {
        printf("%s: refused %s\n", label, errname(errno));
        return;
    }
    struct {
        struct nlmsghdr h;
        struct unix_diag_req r;
    } req = {
        .h = {.nlmsg_len = sizeof req, .nlmsg_type = SOCK_DIAG_BY_FAMILY,
              .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
        .r = {.sdiag_family = AF_UNIX, .udiag_states = -1, .udiag_show = UDIAG_SHOW_NAME},
    };
    char want[64];
    snprintf(want, sizeof want, "-%d", HOSTPID);
    int sockets = 0, host = 0;
    if (send(s, &req, sizeof req, 0) < 0) {
        printf("%s: refused %s\n", label, errname(errno));
        close(s);
        return;
    }
    for (int done = 0; !done;) {
        ssize_t n = reply(s, 2000);
        if (n <= 0)
            break;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
                done = 1;
                break;
            }
            sockets++;
            struct unix_diag_msg *m = NLMSG_DATA(h);
            int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
            for (struct nlattr *a = (struct nlattr *)(m + 1); len >= (int)sizeof *a && a->nla_len >= sizeof *a && a->nla_len <= len;
                 len -= NLA_ALIGN(a->nla_len), a = (struct nlattr *)((char *)a + NLA_ALIGN(a->nla_len))) {
                if (a->nla_type != UNIX_DIAG_NAME)
                    continue;
                char name[128] = {0};
                int nl = a->nla_len - (int)sizeof *a;
                memcpy(name, (char *)(a + 1), nl < 127 ? nl : 127);
                const char *text = name[0] ? name : name + 1; /* abstract: after the NUL */
                if (strstr(text, "occlum-sec-") && strstr(text, want))
                    host++;
            }
        }
    }
    close(s);
    if (host)
        escape(label, "listed the host's abstract sockets");
    else
        printf("%s: contained (%d sockets, none of the host's)\n", label, sockets);
}

static void proc_events(void)
{
    const char *label = "NETLINK_CONNECTOR process events";
    int s = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
    if (s < 0) {
        printf("%s: refused %s\n", label, errname(errno));
        return;
    }
    struct sockaddr_nl a = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC, .nl_pid = 0};
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) {
        printf("%s: refused %s\n", label, errname(errno));
        close(s);
        return;
    }
    struct {
        struct nlmsghdr h;
        struct cn_msg c;
        enum proc_cn_mcast_op op;
    } __attribute__((packed)) req = {
        .h = {.nlmsg_len = sizeof req, .nlmsg_type = NLMSG_DONE},
        .c = {.id = {.idx = CN_IDX_PROC, .val = CN_VAL_PROC}, .len = sizeof(enum proc_cn_mcast_op)},
        .op = PROC_CN_MCAST_LISTEN,
    };
    if (send(s, &req, sizeof req, 0) < 0) {
        printf("%s: refused %s\n", label, errname(errno));
        close(s);
        return;
    }
    pid_t c = fork();
    if (c == 0)
        _exit(0);
    waitpid(c, NULL, 0);
    int events = 0;
    ssize_t n;
    while ((n = reply(s, 500)) > 0) {
        struct nlmsghdr *h = (struct nlmsghdr *)buf;
        struct cn_msg *m = NLMSG_DATA(h);
        if (n >= (ssize_t)(NLMSG_LENGTH(sizeof *m) + sizeof(struct proc_event)) &&
            m->id.idx == CN_IDX_PROC)
            events++;
    }
    close(s);
    if (events)
        escape(label, "received the kernel's process events");
    else
        printf("%s: contained\n", label);
}

/* The family id of a generic netlink family, or -errno. */
static int genl_family(int s, const char *name)
{
    struct {
        struct nlmsghdr h;
        struct genlmsghdr g;
        char attrs[64];
    } req;
    memset(&req, 0, sizeof req);
    struct nlattr *a = (struct nlattr *)req.attrs;
    a->nla_type = CTRL_ATTR_FAMILY_NAME;
    a->nla_len = NLA_HDRLEN + strlen(name) + 1;
    strcpy((char *)a + NLA_HDRLEN, name);
    req.h.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN + NLA_ALIGN(a->nla_len));
    req.h.nlmsg_type = GENL_ID_CTRL;
    req.h.nlmsg_flags = NLM_F_REQUEST;
    req.g.cmd = CTRL_CMD_GETFAMILY;
    req.g.version = 1;
    if (send(s, &req, req.h.nlmsg_len, 0) < 0)
        return -errno;
    ssize_t n = reply(s, 2000);
    if (n <= 0)
        return -ETIMEDOUT;
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    if (h->nlmsg_type == NLMSG_ERROR)
        return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
    int len = (int)(h->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN));
    for (a = (struct nlattr *)((char *)NLMSG_DATA(h) + GENL_HDRLEN); len >= NLA_HDRLEN;
         len -= NLA_ALIGN(a->nla_len), a = (struct nlattr *)((char *)a + NLA_ALIGN(a->nla_len)))
        if (a->nla_type == CTRL_ATTR_FAMILY_ID)
            return *(unsigned short *)((char *)a + NLA_HDRLEN);
    return -ENOENT;
}

static void taskstats(void)
{
    const char *label = "NETLINK_GENERIC taskstats of the host pid";
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
    if (s < 0) {
        printf("%s: refused %s\n", label, errname(errno));
        return;
    }
    int id = genl_family(s, TASKSTATS_GENL_NAME);
    if (id < 0) {
        printf("%s: refused %s\n", label, errname(-id));
        close(s);
        return;
    }
    struct {
        struct nlmsghdr h;
        struct genlmsghdr g;
        struct nlattr a;
        unsigned int pid;
    } req = {
        .h = {.nlmsg_len = sizeof req, .nlmsg_type = id, .nlmsg_flags = NLM_F_REQUEST},
        .g = {.cmd = TASKSTATS_CMD_GET, .version = 1},
        .a = {.nla_len = NLA_HDRLEN + sizeof(unsigned int), .nla_type = TASKSTATS_CMD_ATTR_PID},
        .pid = (unsigned int)HOSTPID,
    };
    if (send(s, &req, sizeof req, 0) < 0) {
        printf("%s: refused %s\n", label, errname(errno));
        close(s);
        return;
    }
    ssize_t n = reply(s, 2000);
    close(s);
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    if (n <= 0)
        printf("%s: refused no answer\n", label);
    else if (h->nlmsg_type == NLMSG_ERROR)
        printf("%s: refused %s\n", label, errname(-((struct nlmsgerr *)NLMSG_DATA(h))->error));
    else
        escape(label, "answered for a host process");
}

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    unix_dump();
    proc_events();
    taskstats();
    return sec_finish();
}
