/* SO_PEERCRED tells a Unix socket server who its client is: the client's pid and its
 * effective uid and gid, as peer authentication (PostgreSQL's "peer", D-Bus) uses them. A
 * client that switched users before connecting is seen as that user; the client sees the
 * server's ids; a short buffer gets the pid only; a socket with no peer gets no ids. */
#include "common.h"
#include <grp.h>
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#define USER 1234
#define GROUP 2345

static int peer(int fd, struct ucred *uc)
{
    socklen_t len = sizeof *uc;
    memset(uc, 0x55, sizeof *uc);
    int r = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, uc, &len);
    if (r == 0 && len != sizeof *uc) {
        printf("SO_PEERCRED: length %u\n", (unsigned)len);
        t_failures++;
    }
    return r;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    rm_tree_at(AT_FDCWD, dir);
    mkdir_p(dir);
    CHECK(chmod(dir, 0777) == 0);
    /* the client runs in the scratch directory and names the socket relative to it: its new
     * user need not search the directory's parents (natively a private temporary one) */
    struct sockaddr_un addr = {.sun_family = AF_UNIX, .sun_path = "server.sock"};
    socklen_t addrlen = sizeof addr;
    struct sockaddr_un bound = {.sun_family = AF_UNIX};
    snprintf(bound.sun_path, sizeof bound.sun_path, "%s/server.sock", dir);
    struct ucred uc;

    /* a socket pair: both ends are this process, root */
    int sv[2];
    OK("socketpair", socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    OK("pair peer", peer(sv[0], &uc));
    printf("pair: pid is mine %d uid %u gid %u\n", uc.pid == getpid(), uc.uid, uc.gid);
    close(sv[0]), close(sv[1]);

    /* and an abstract name */
    struct sockaddr_un abs_addr = {.sun_family = AF_UNIX};
    snprintf(abs_addr.sun_path + 1, sizeof abs_addr.sun_path - 1, "peercred-%d", (int)getpid());
    socklen_t abs_len = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(abs_addr.sun_path + 1);
    int abs_srv = OK("abstract socket", socket(AF_UNIX, SOCK_STREAM, 0));
    OK("abstract bind", bind(abs_srv, (struct sockaddr *)&abs_addr, abs_len));
    OK("abstract listen", listen(abs_srv, 4));
    int srv = OK("socket", socket(AF_UNIX, SOCK_STREAM, 0));
    OK("bind", bind(srv, (struct sockaddr *)&bound, sizeof bound));
    CHECK(chmod(bound.sun_path, 0777) == 0);
    OK("listen", listen(srv, 4));

    /* no peer yet: no pid, the ids that cannot be told */
    int lone = OK("unconnected socket", socket(AF_UNIX, SOCK_STREAM, 0));
    OK("unconnected peer", peer(lone, &uc));
    printf("unconnected: pid %d uid %u gid %u\n", uc.pid, uc.uid, uc.gid);
    close(lone);

    int report[2];
    OK("pipe", pipe(report));
    pid_t child = fork();
    if (child == 0) {
        /* a user of its own, then a client */
        gid_t groups[] = {GROUP};
        if (chdir(dir) != 0 || setgroups(1, groups) != 0 || setresgid(GROUP, GROUP, GROUP) != 0 ||
            setresuid(USER, USER, USER) != 0)
            _exit(2);
        int c = socket(AF_UNIX, SOCK_STREAM, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&addr, addrlen) != 0)
            _exit(3);
        struct ucred s;
        socklen_t len = sizeof s;
        if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &s, &len) != 0)
            _exit(4);
        /* what the client learns of the server: the parent, root */
        char line[64];
        int n = snprintf(line, sizeof line, "%d %u %u\n", s.pid == getppid(), s.uid, s.gid);
        if (write(report[1], line, (size_t)n) != n)
            _exit(5);
        char x;
        if (read(c, &x, 1) != 1) /* until the server has looked */
            _exit(6);
        int a = socket(AF_UNIX, SOCK_STREAM, 0);
        if (a < 0 || connect(a, (struct sockaddr *)&abs_addr, abs_len) != 0)
            _exit(7);
        if (read(a, &x, 1) != 1)
            _exit(8);
        _exit(0);
    }
    close(report[1]);
    struct pollfd pfd = {srv, POLLIN, 0};
    if (poll(&pfd, 1, 20000) != 1) { /* the child failed before connecting */
        int status;
        waitpid(child, &status, 0);
        printf("no client: child exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return 1;
    }
    int conn = OK("accept", accept(srv, NULL, NULL));
    OK("client peer", peer(conn, &uc));
    printf("client: pid is the child %d uid %u gid %u\n", uc.pid == child, uc.uid, uc.gid);

    /* a buffer of 4 bytes gets the pid only, and the length says so */
    struct ucred part = {0, 0x55555555u, 0x55555555u};
    socklen_t len = sizeof part.pid;
    OK("short peer", getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &part, &len));
    printf("short: length %u pid is the child %d uid untouched %d\n", (unsigned)len,
           part.pid == child, part.uid == 0x55555555u);
    len = (socklen_t)-1;
    ERR("negative length", getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &part, &len), EINVAL);

    char buf[64] = {0};
    CHECK(read(report[0], buf, sizeof buf - 1) > 0);
    int is_parent;
    unsigned su, sg;
    CHECK(sscanf(buf, "%d %u %u", &is_parent, &su, &sg) == 3);
    printf("server seen by the client: pid is the parent %d uid %u gid %u\n", is_parent, su, sg);
    CHECK(write(conn, "x", 1) == 1);
    int abs_conn = OK("abstract accept", accept(abs_srv, NULL, NULL));
    OK("abstract client peer", peer(abs_conn, &uc));
    printf("abstract client: pid is the child %d uid %u gid %u\n", uc.pid == child, uc.uid,
           uc.gid);
    CHECK(write(abs_conn, "x", 1) == 1);
    close(abs_conn);
    close(abs_srv);
    int status;
    CHECK(waitpid(child, &status, 0) == child);
    printf("child: exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* not a socket, not a descriptor */
    int fd = OK("open", open(dir, O_RDONLY));
    len = sizeof uc;
    ERR("not a socket", getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len), ENOTSOCK);
    ERR("bad descriptor", getsockopt(999, SOL_SOCKET, SO_PEERCRED, &uc, &len), EBADF);
    close(fd);
    close(conn);
    close(srv);
    rm_tree_at(AT_FDCWD, dir);
    if (t_failures)
        return 1;
    printf("PASS\n");
    return 0;
}
