/* AF_UNIX sockets with abstract names (a leading NUL byte): no file is created, EADDRINUSE
 * while bound, connect/accept between processes, the name read back by getsockname and seen
 * by the peer, ECONNREFUSED and a free name after close, datagrams, and autobind. */
#include "common.h"
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static socklen_t abstract_of(struct sockaddr_un *a, const char *name)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    memcpy(a->sun_path + 1, name, strlen(name));
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
}

/* "abstract NAME" with the test's own prefix replaced by "<test>", or "unnamed"/"path". */
static const char *show(const struct sockaddr_un *a, socklen_t len, const char *ours)
{
    static char s[160];
    size_t n = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
    if (n == 0)
        return "unnamed";
    if (a->sun_path[0] != 0)
        return "path";
    size_t k = strlen(ours);
    if (n - 1 >= k && memcmp(a->sun_path + 1, ours, k) == 0)
        snprintf(s, sizeof s, "abstract <test>%.*s", (int)(n - 1 - k), a->sun_path + 1 + k);
    else
        snprintf(s, sizeof s, "abstract (%zu bytes, not as bound)", n - 1);
    return s;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    /* names unique to this run: the abstract namespace is shared by the whole network
     * namespace */
    char prefix[64], name[96], cname[96];
    snprintf(prefix, sizeof prefix, "occlum-test-%d", (int)getpid());
    snprintf(name, sizeof name, "%s-server", prefix);
    snprintf(cname, sizeof cname, "%s-client", prefix);

    struct sockaddr_un ab, got;
    socklen_t ablen = abstract_of(&ab, name), gl;
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    OK("bind abstract", bind(l, (struct sockaddr *)&ab, ablen));
    OK("listen", listen(l, 2));
    int l2 = socket(AF_UNIX, SOCK_STREAM, 0);
    ERR("bind the same name again", bind(l2, (struct sockaddr *)&ab, ablen), EADDRINUSE);
    gl = sizeof got;
    CHECK(getsockname(l, (struct sockaddr *)&got, &gl) == 0);
    printf("getsockname: %s, length as bound %d\n", show(&got, gl, prefix), gl == ablen);
    DIR *d = opendir(".");
    int files = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        files += de->d_name[0] != '.';
    closedir(d);
    printf("files created: %d\n", files);

    /* a client in a child, itself bound to an abstract name */
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        struct sockaddr_un me;
        socklen_t mlen = abstract_of(&me, cname);
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        if (bind(s, (struct sockaddr *)&me, mlen) != 0)
            _exit(99);
        if (connect(s, (struct sockaddr *)&ab, ablen) != 0)
            _exit(100);
        struct sockaddr_un peer;
        socklen_t pl = sizeof peer;
        getpeername(s, (struct sockaddr *)&peer, &pl);
        int peer_ok = pl == ablen && memcmp(&peer, &ab, ablen) == 0;
        send(s, "hi", 2, 0);
        char b = 0;
        recv(s, &b, 1, 0);
        _exit(b == 'k' && peer_ok ? 0 : 101);
    }
    struct sockaddr_un peer;
    socklen_t pl = sizeof peer;
    int s = accept(l, (struct sockaddr *)&peer, &pl);
    printf("accept: %s, client's name %s\n", s >= 0 ? "ok" : errname(errno), show(&peer, pl, prefix));
    char buf[16] = {0};
    CHECK(recv(s, buf, sizeof buf, 0) == 2);
    printf("got: %s\n", buf);
    CHECK(send(s, "k", 1, 0) == 1);
    printf("client (saw the server's name as bound): %d\n", wait_child(c));
    close(s);

    /* closed: refused, and the name is free again */
    close(l);
    int x = socket(AF_UNIX, SOCK_STREAM, 0);
    ERR("connect after close", connect(x, (struct sockaddr *)&ab, ablen), ECONNREFUSED);
    close(x);
    OK("bind the name again after close", bind(l2, (struct sockaddr *)&ab, ablen));
    close(l2);

    /* datagrams between abstract names, with the sender's name */
    struct sockaddr_un da, db, from;
    socklen_t dalen = abstract_of(&da, name), dblen = abstract_of(&db, cname), fl;
    int d1 = socket(AF_UNIX, SOCK_DGRAM, 0), d2 = socket(AF_UNIX, SOCK_DGRAM, 0);
    OK("bind datagram a", bind(d1, (struct sockaddr *)&da, dalen));
    OK("bind datagram b", bind(d2, (struct sockaddr *)&db, dblen));
    ssize_t n = sendto(d2, "dgram", 5, 0, (struct sockaddr *)&da, dalen);
    printf("sendto: %s\n", n == 5 ? "ok" : errname(errno));
    fl = sizeof from;
    memset(buf, 0, sizeof buf);
    struct pollfd pf = {d1, POLLIN, 0};
    poll(&pf, 1, 1000); /* not forever, should the datagram be lost */
    n = recvfrom(d1, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
    if (n < 0)
        printf("datagram: %s\n", errname(errno));
    else
        printf("datagram: %ld %s from %s\n", (long)n, buf, show(&from, fl, prefix));
    close(d1);
    close(d2);

    /* autobind: binding only the family gives a 5-hex-digit abstract name */
    int au = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un fam = {.sun_family = AF_UNIX};
    OK("autobind", bind(au, (struct sockaddr *)&fam, sizeof(sa_family_t)));
    gl = sizeof got;
    CHECK(getsockname(au, (struct sockaddr *)&got, &gl) == 0);
    printf("autobind: abstract %d, 5 bytes %d\n", got.sun_path[0] == 0,
           gl == offsetof(struct sockaddr_un, sun_path) + 6);
    close(au);
    ERR("name too long", bind(socket(AF_UNIX, SOCK_STREAM, 0), (struct sockaddr *)&ab, sizeof ab + 1), EINVAL);
    return t_finish();
}
