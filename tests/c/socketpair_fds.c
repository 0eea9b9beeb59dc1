/* socketpair and SCM_RIGHTS: a file and a pipe end passed to another process work there
 * (shared offset, data through the pipe), several fds in one message, MSG_CMSG_CLOEXEC,
 * MSG_CTRUNC when the control buffer is short; SCM_CREDENTIALS with SO_PASSCRED. */
#include "common.h"
#include <signal.h>
#include <sys/socket.h>
#include <sys/uio.h>

static int send_fds(int sock, const int *fds, int n, const char *data)
{
    char cbuf[CMSG_SPACE(sizeof(int) * 8)];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec io = {(void *)data, strlen(data)};
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1};
    if (n > 0) {
        m.msg_control = cbuf;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    }
    return (int)sendmsg(sock, &m, 0);
}

/* Receive data and up to max fds; returns the number of fds, -1 on error. */
static int recv_fds(int sock, int *fds, int max, char *data, size_t len, int flags, int *mflags)
{
    char cbuf[CMSG_SPACE(sizeof(int) * 8)];
    struct iovec io = {data, len};
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = cbuf,
                       .msg_controllen = CMSG_SPACE(sizeof(int) * max)};
    ssize_t r = recvmsg(sock, &m, flags);
    if (r < 0)
        return -1;
    data[r] = 0;
    if (mflags)
        *mflags = m.msg_flags;
    int n = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            memcpy(fds + n, CMSG_DATA(c), sizeof(int) * k);
            n += k;
        }
    return n;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    int sv[2];
    OK("socketpair stream", socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    CHECK(send(sv[0], "ping", 4, 0) == 4);
    char buf[128];
    memset(buf, 0, sizeof buf);
    CHECK(recv(sv[1], buf, sizeof buf, 0) == 4);
    printf("through the pair: %s\n", buf);

    /* a child opens a file and a pipe, passes them, and exits */
    CHECK(write_file("shared.txt", "0123456789") == 0);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        close(sv[0]);
        int f = open("shared.txt", O_RDWR);
        lseek(f, 4, SEEK_SET);
        int p[2];
        pipe(p);
        write(p[1], "from the child's pipe", 21);
        int fds[3] = {f, p[0], p[1]};
        if (send_fds(sv[1], fds, 3, "fds") != 3)
            _exit(1);
        _exit(0);
    }
    close(sv[1]);
    printf("sender: %d\n", wait_child(c));
    int fds[8], mflags = 0;
    int n = recv_fds(sv[0], fds, 8, buf, sizeof buf, 0, &mflags);
    printf("received %d fds with data \"%s\", truncated %d\n", n, buf, (mflags & MSG_CTRUNC) != 0);
    if (n == 3) {
        printf("new fds distinct and open: %d\n", fcntl(fds[0], F_GETFD) >= 0 &&
                                                       fcntl(fds[1], F_GETFD) >= 0 && fds[0] != fds[1]);
        printf("file offset travelled: %ld\n", (long)lseek(fds[0], 0, SEEK_CUR));
        memset(buf, 0, sizeof buf);
        CHECK(read(fds[0], buf, 3) == 3);
        printf("read from the passed file: %s\n", buf);
        struct stat a, b;
        CHECK(fstat(fds[0], &a) == 0 && stat("shared.txt", &b) == 0);
        printf("same file: %d, type %s\n", a.st_ino == b.st_ino && a.st_dev == b.st_dev, ftype(a.st_mode));
        CHECK(write(fds[0], "XY", 2) == 2);
        printf("write through it: %s\n", read_file("shared.txt"));
        memset(buf, 0, sizeof buf);
        CHECK(read(fds[1], buf, 21) == 21);
        printf("read from the passed pipe: %s\n", buf);
        CHECK(write(fds[2], "round", 5) == 5);
        memset(buf, 0, sizeof buf);
        CHECK(read(fds[1], buf, 5) == 5);
        printf("pipe still joined: %s\n", buf);
        CHECK(fstat(fds[1], &a) == 0);
        printf("pipe type: %s, cloexec %d\n", ftype(a.st_mode), (fcntl(fds[1], F_GETFD) & FD_CLOEXEC) != 0);
        for (int i = 0; i < 3; i++)
            close(fds[i]);
    }
    close(sv[0]);

    /* a parent passes its own pipe end to a child, which uses it to answer */
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    int p[2];
    CHECK(pipe(p) == 0);
    c = fork();
    if (c == 0) {
        close(sv[0]);
        close(p[0]);
        close(p[1]);
        int got[8];
        char d[32];
        int k = recv_fds(sv[1], got, 8, d, sizeof d - 1, MSG_CMSG_CLOEXEC, NULL);
        if (k != 1)
            _exit(1);
        int ce = (fcntl(got[0], F_GETFD) & FD_CLOEXEC) != 0;
        write(got[0], ce ? "cloexec" : "plain", ce ? 7 : 5);
        _exit(0);
    }
    close(sv[1]);
    CHECK(send_fds(sv[0], &p[1], 1, "w") == 1);
    close(p[1]);
    memset(buf, 0, sizeof buf);
    ssize_t r = read(p[0], buf, sizeof buf);
    printf("child answered through the passed pipe: %ld %s\n", (long)r, buf);
    printf("child: %d\n", wait_child(c));
    close(p[0]);

    /* a short control buffer: MSG_CTRUNC, the fds that did not fit are closed */
    int s2[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s2) == 0);
    int many[4];
    for (int i = 0; i < 4; i++)
        many[i] = open("shared.txt", O_RDONLY);
    CHECK(send_fds(s2[0], many, 4, "m") == 1);
    for (int i = 0; i < 4; i++)
        close(many[i]);
    n = recv_fds(s2[1], fds, 1, buf, sizeof buf, 0, &mflags);
    printf("short control buffer: %d fd(s), MSG_CTRUNC %d\n", n, (mflags & MSG_CTRUNC) != 0);
    for (int i = 0; i < n; i++)
        close(fds[i]);

    /* passing a bad fd */
    int bad = 99;
    ERR("pass a closed fd", send_fds(s2[0], &bad, 1, "b"), EBADF);

    /* passing one end of the pair through itself */
    CHECK(send_fds(s2[0], &s2[0], 1, "s") == 1);
    n = recv_fds(s2[1], fds, 8, buf, sizeof buf, 0, NULL);
    printf("passed a socket: %d\n", n);
    if (n == 1) {
        struct stat st;
        fstat(fds[0], &st);
        printf("  its type: %s\n", ftype(st.st_mode));
        CHECK(send(fds[0], "via copy", 8, 0) == 8);
        memset(buf, 0, sizeof buf);
        CHECK(recv(s2[1], buf, sizeof buf, 0) == 8);
        printf("  sent through the copy: %s\n", buf);
        close(fds[0]);
    }
    close(s2[0]);
    close(s2[1]);

    /* SCM_CREDENTIALS: the kernel fills in the sender's pid, uid, gid */
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, s2) == 0);
    int one = 1;
    OK("SO_PASSCRED", setsockopt(s2[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one));
    CHECK(send(s2[0], "cred", 4, 0) == 4);
    char cbuf[CMSG_SPACE(sizeof(struct ucred))];
    struct iovec io = {buf, sizeof buf};
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    CHECK(recvmsg(s2[1], &m, 0) == 4);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    if (cm && cm->cmsg_type == SCM_CREDENTIALS) {
        struct ucred uc;
        memcpy(&uc, CMSG_DATA(cm), sizeof uc);
        printf("credentials: pid is ours %d, uid %d, gid %d\n", uc.pid == getpid(), uc.uid == getuid(),
               uc.gid == getgid());
    } else {
        printf("credentials: none\n");
    }
    close(s2[0]);
    close(s2[1]);

    ERR("socketpair AF_INET", socketpair(AF_INET, SOCK_STREAM, 0, sv), EOPNOTSUPP);
    ERR("socketpair bad type", socketpair(AF_UNIX, 99, 0, sv), EINVAL);
    return t_finish();
}
