/* AF_UNIX sockets bound to paths in the scratch directory, stream and datagram: bind creates
 * a socket file, EADDRINUSE while it exists, connect/accept between processes (relative,
 * absolute and subdirectory paths), peer addresses and credentials, ECONNREFUSED once the
 * listener is gone, ENOENT after unlink. Abstract names are in unix_abstract.c. */
#include "common.h"
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static socklen_t addr_of(struct sockaddr_un *a, const char *path)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    strncpy(a->sun_path, path, sizeof a->sun_path - 1);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
}

/* A child that connects to a, sends msg, and exits with the first byte of the reply. */
static pid_t client(const struct sockaddr_un *a, socklen_t len, const char *msg)
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(s, (const struct sockaddr *)a, len) != 0)
            _exit(100);
        send(s, msg, strlen(msg), 0);
        char b = 0;
        if (recv(s, &b, 1, 0) != 1)
            _exit(101);
        _exit((unsigned char)b);
    }
    return c;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_un a, got;
    socklen_t len = addr_of(&a, "stream.sock");
    char buf[128];

    /* stream: bind, listen, a socket file appears */
    int l = OK("socket stream", socket(AF_UNIX, SOCK_STREAM, 0));
    OK("bind to a path", bind(l, (struct sockaddr *)&a, len));
    struct stat st;
    CHECK(stat("stream.sock", &st) == 0);
    printf("socket file: %s\n", ftype(st.st_mode));
    socklen_t gl = sizeof got;
    CHECK(getsockname(l, (struct sockaddr *)&got, &gl) == 0);
    printf("getsockname: %s\n", got.sun_path);
    OK("listen", listen(l, 4));
    int l2 = socket(AF_UNIX, SOCK_STREAM, 0);
    ERR("bind the same path again", bind(l2, (struct sockaddr *)&a, len), EADDRINUSE);
    struct sockaddr_un other;
    socklen_t olen = addr_of(&other, "other.sock");
    ERR("bind a bound socket to another path", bind(l, (struct sockaddr *)&other, olen), EINVAL);
    close(l2);

    /* a relative path resolves against the cwd; so does the absolute one */
    pid_t c = client(&a, len, "hello");
    int s = OK("accept", accept(l, NULL, NULL));
    memset(buf, 0, sizeof buf);
    CHECK(recv(s, buf, sizeof buf, 0) == 5);
    printf("server got: %s\n", buf);
    gl = sizeof got;
    CHECK(getpeername(s, (struct sockaddr *)&got, &gl) == 0);
    printf("peer is unnamed: %d\n", gl == offsetof(struct sockaddr_un, sun_path));
    gl = sizeof got;
    CHECK(getsockname(s, (struct sockaddr *)&got, &gl) == 0);
    printf("accepted socket's own name: %s\n", got.sun_path);
    struct ucred cr;
    socklen_t cl = sizeof cr;
    CHECK(getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0);
    printf("SO_PEERCRED: pid is the client %d, uid is ours %d\n", cr.pid == c, cr.uid == getuid());
    CHECK(send(s, "\x2a", 1, 0) == 1);
    printf("client exit (the byte it got): %d\n", wait_child(c));
    close(s);

    char cwd[PATH_MAX];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    char abs[PATH_MAX + 16];
    snprintf(abs, sizeof abs, "%s/stream.sock", cwd);
    struct sockaddr_un aa;
    socklen_t alen = addr_of(&aa, abs);
    if (strlen(abs) < sizeof aa.sun_path) {
        c = client(&aa, alen, "x");
        s = accept(l, NULL, NULL);
        CHECK(recv(s, buf, 1, 0) == 1);
        send(s, "\x07", 1, 0);
        printf("absolute path client: %d\n", wait_child(c));
        close(s);
    } else {
        printf("absolute path client: 7\n");
    }

    /* a path through a subdirectory, after chdir elsewhere */
    mkdir("sub", 0755);
    struct sockaddr_un sa;
    socklen_t slen = addr_of(&sa, "sub/in-dir.sock");
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    OK("bind in a subdirectory", bind(ls, (struct sockaddr *)&sa, slen));
    listen(ls, 1);
    CHECK(chdir("sub") == 0);
    struct sockaddr_un sb;
    socklen_t sblen = addr_of(&sb, "in-dir.sock");
    c = client(&sb, sblen, "y");
    s = accept(ls, NULL, NULL);
    CHECK(recv(s, buf, 1, 0) == 1);
    send(s, "\x08", 1, 0);
    printf("client from the subdirectory: %d\n", wait_child(c));
    close(s);
    close(ls);
    CHECK(chdir("..") == 0);

    /* the listener goes: ECONNREFUSED while the file stays; ENOENT once it is unlinked */
    close(l);
    int x = socket(AF_UNIX, SOCK_STREAM, 0);
    ERR("connect after the listener closed", connect(x, (struct sockaddr *)&a, len), ECONNREFUSED);
    close(x);
    CHECK(stat("stream.sock", &st) == 0);
    l2 = socket(AF_UNIX, SOCK_STREAM, 0);
    ERR("bind while the old file exists", bind(l2, (struct sockaddr *)&a, len), EADDRINUSE);
    OK("unlink the socket file", unlink("stream.sock"));
    x = socket(AF_UNIX, SOCK_STREAM, 0);
    ERR("connect after unlink", connect(x, (struct sockaddr *)&a, len), ENOENT);
    close(x);
    OK("bind after unlink", bind(l2, (struct sockaddr *)&a, len));
    close(l2);
    unlink("stream.sock");

    /* connecting to a path that is not a socket */
    CHECK(write_file("plain", "x") == 0);
    struct sockaddr_un pa;
    socklen_t plen = addr_of(&pa, "plain");
    x = socket(AF_UNIX, SOCK_STREAM, 0);
    ERR("connect to a regular file", connect(x, (struct sockaddr *)&pa, plen), ECONNREFUSED);
    close(x);
    ERR("bind over a regular file", bind(socket(AF_UNIX, SOCK_STREAM, 0), (struct sockaddr *)&pa, plen),
        EADDRINUSE);
    struct sockaddr_un na;
    socklen_t nlen = addr_of(&na, "missing-dir/s.sock");
    ERR("bind in a missing directory", bind(socket(AF_UNIX, SOCK_STREAM, 0), (struct sockaddr *)&na, nlen),
        ENOENT);

    /* datagrams between two bound sockets */
    struct sockaddr_un da, db;
    socklen_t dalen = addr_of(&da, "dgram-a.sock"), dblen = addr_of(&db, "dgram-b.sock");
    int d1 = socket(AF_UNIX, SOCK_DGRAM, 0), d2 = socket(AF_UNIX, SOCK_DGRAM, 0);
    OK("bind datagram a", bind(d1, (struct sockaddr *)&da, dalen));
    OK("bind datagram b", bind(d2, (struct sockaddr *)&db, dblen));
    CHECK(sendto(d2, "one", 3, 0, (struct sockaddr *)&da, dalen) == 3);
    CHECK(sendto(d2, "two!", 4, 0, (struct sockaddr *)&da, dalen) == 4);
    struct sockaddr_un from;
    socklen_t fl = sizeof from;
    memset(buf, 0, sizeof buf);
    ssize_t n = recvfrom(d1, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    printf("datagram: %ld %s from %s\n", (long)n, buf, from.sun_path);
    n = recv(d1, buf, 2, MSG_TRUNC);
    printf("truncated datagram: real length %ld\n", (long)n);
    OK("connect datagram", connect(d2, (struct sockaddr *)&da, dalen));
    CHECK(send(d2, "three", 5, 0) == 5);
    memset(buf, 0, sizeof buf);
    CHECK(recv(d1, buf, sizeof buf, 0) == 5);
    printf("connected datagram: %s\n", buf);
    close(d1);
    ERR("send to a closed datagram peer", send(d2, "x", 1, 0), ECONNREFUSED);
    close(d2);
    unlink("dgram-a.sock");
    int d3 = socket(AF_UNIX, SOCK_DGRAM, 0);
    ERR("sendto a path nobody bound", sendto(d3, "x", 1, 0, (struct sockaddr *)&da, dalen), ENOENT);
    close(d3);

    /* nothing but the files we made is left in the directory */
    printf("left: %s %s\n", access("dgram-b.sock", F_OK) == 0 ? "dgram-b.sock" : "-",
           access("sub/in-dir.sock", F_OK) == 0 ? "sub/in-dir.sock" : "-");
    return t_finish();
}
