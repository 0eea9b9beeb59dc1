/* Abstract Unix sockets the host bound are out of reach, whichever call names them: the
 * test harness (HOSTPID) binds "occlum-sec-dgram-<pid>" (datagram) and
 * "occlum-sec-stream-<pid>" (stream, listening) in the host's abstract namespace. And the
 * program's abstract names are not the host's: binding the host's name gives it a socket of
 * its own (no EADDRINUSE), so it can neither take the name of a host service before that
 * service binds it nor be reached by host clients. */
#include "sec.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static socklen_t host_name(struct sockaddr_un *a, const char *kind)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "occlum-sec-%s-%d", kind, HOSTPID);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

static long by_sendmsg(void)
{
    struct sockaddr_un a;
    socklen_t len = host_name(&a, "dgram");
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    struct msghdr m = {.msg_name = &a, .msg_namelen = len, .msg_iov = &iov, .msg_iovlen = 1};
    return sendmsg(s, &m, 0);
}

static long by_sendmmsg(void)
{
    struct sockaddr_un a;
    socklen_t len = host_name(&a, "dgram");
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    struct mmsghdr m = {.msg_hdr = {.msg_name = &a, .msg_namelen = len, .msg_iov = &iov, .msg_iovlen = 1}};
    long r = syscall(SYS_sendmmsg, s, &m, 1, 0);
    return r > 0 ? r : -1;
}

static long by_sendto(void)
{
    struct sockaddr_un a;
    socklen_t len = host_name(&a, "dgram");
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    return sendto(s, "x", 1, 0, (struct sockaddr *)&a, len);
}

static long by_connect_dgram(void)
{
    struct sockaddr_un a;
    socklen_t len = host_name(&a, "dgram");
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (connect(s, (struct sockaddr *)&a, len) != 0)
        return -1;
    return send(s, "x", 1, 0);
}

static long by_connect_stream(void)
{
    struct sockaddr_un a;
    socklen_t len = host_name(&a, "stream");
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    return connect(s, (struct sockaddr *)&a, len);
}

static void bind_host_name(void)
{
    const char *label = "bind the name a host socket holds";
    struct sockaddr_un a;
    socklen_t len = host_name(&a, "stream");
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(s, (struct sockaddr *)&a, len) == 0)
        printf("%s: contained\n", label); /* a namespace of its own */
    else if (errno == EADDRINUSE)
        escape(label, "the host's abstract names are the program's");
    else
        printf("%s: refused %s\n", label, errname(errno));
    close(s);
}

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    PROBE("sendmsg to a host abstract name", by_sendmsg);
    PROBE("sendmmsg to a host abstract name", by_sendmmsg);
    PROBE("sendto a host abstract name", by_sendto);
    PROBE("connect+send to a host abstract datagram name", by_connect_dgram);
    PROBE("connect to a host abstract stream name", by_connect_stream);
    bind_host_name();
    return sec_finish();
}
