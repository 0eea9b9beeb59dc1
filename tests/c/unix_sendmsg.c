/* sendmsg with an address (msg_name) on Unix datagram sockets: a path written differently
 * from the text the receiver bound (absolute, through "..", through a symlink), the usual
 * errors, an abstract name with a descriptor passed along (SCM_RIGHTS), and sendmsg without
 * an address on a connected socket. */
#include "common.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

static socklen_t path_of(struct sockaddr_un *a, const char *path)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof a->sun_path, "%s", path);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
}

static const char *send_to(int s, const struct sockaddr_un *a, socklen_t alen, const char *text)
{
    struct iovec iov[2] = {{(void *)text, 1}, {(void *)(text + 1), strlen(text) - 1}};
    struct msghdr m = {.msg_name = (void *)a, .msg_namelen = alen, .msg_iov = iov, .msg_iovlen = 2};
    ssize_t n = sendmsg(s, &m, 0);
    if (n < 0)
        return errname(errno);
    return n == (ssize_t)strlen(text) ? "ok" : "short";
}

static const char *received(int r)
{
    static char buf[64];
    memset(buf, 0, sizeof buf);
    ssize_t n = recv(r, buf, sizeof buf - 1, MSG_DONTWAIT);
    if (n < 0)
        return errname(errno);
    return buf;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    char cwd[PATH_MAX];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(mkdir("sub", 0755) == 0);

    struct sockaddr_un a;
    int r = socket(AF_UNIX, SOCK_DGRAM, 0);
    OK("bind ./s", bind(r, (struct sockaddr *)&a, path_of(&a, "./s")));
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);

    char path[PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/s", cwd);
    printf("sendmsg to the absolute path: %s", send_to(s, &a, path_of(&a, path), "absolute"));
    printf(", received %s\n", received(r));
    printf("sendmsg to ./s: %s", send_to(s, &a, path_of(&a, "./s"), "as-bound"));
    printf(", received %s\n", received(r));
    CHECK(chdir("sub") == 0);
    printf("sendmsg to ../s: %s", send_to(s, &a, path_of(&a, "../s"), "dotdot"));
    printf(", received %s\n", received(r));
    CHECK(chdir("..") == 0);
    CHECK(symlink("s", "link") == 0);
    printf("sendmsg through a symlink: %s", send_to(s, &a, path_of(&a, "link"), "symlink"));
    printf(", received %s\n", received(r));

    printf("sendmsg to a missing path: %s\n", send_to(s, &a, path_of(&a, "nothing"), "x"));
    CHECK(write_file("plain", "not a socket") == 0);
    printf("sendmsg to a regular file: %s\n", send_to(s, &a, path_of(&a, "plain"), "x"));
    close(r);
    printf("sendmsg after the receiver closed: %s\n", send_to(s, &a, path_of(&a, "s"), "x"));
    CHECK(unlink("s") == 0);
    printf("sendmsg after unlink: %s\n", send_to(s, &a, path_of(&a, path), "x"));

    /* an abstract name, with a pipe's read end passed along */
    struct sockaddr_un ab = {.sun_family = AF_UNIX};
    int k = snprintf(ab.sun_path + 1, sizeof ab.sun_path - 1, "occlum-sendmsg-%d", (int)getpid());
    socklen_t ablen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + k);
    int ar = socket(AF_UNIX, SOCK_DGRAM, 0);
    OK("bind abstract", bind(ar, (struct sockaddr *)&ab, ablen));
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "through the pipe", 16) == 16);
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = {"fd", 2};
    struct msghdr m = {.msg_name = &ab, .msg_namelen = ablen, .msg_iov = &iov, .msg_iovlen = 1,
                       .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &p[0], sizeof(int));
    printf("sendmsg to an abstract name with a descriptor: %ld\n", (long)sendmsg(s, &m, 0));
    close(p[0]);
    close(p[1]);
    char data[8] = {0}, rbuf[CMSG_SPACE(sizeof(int))];
    struct iovec riov = {data, sizeof data - 1};
    struct msghdr rm = {.msg_iov = &riov, .msg_iovlen = 1, .msg_control = rbuf,
                        .msg_controllen = sizeof rbuf};
    ssize_t n = recvmsg(ar, &rm, MSG_DONTWAIT);
    struct cmsghdr *rc = CMSG_FIRSTHDR(&rm);
    int got = -1;
    if (rc && rc->cmsg_type == SCM_RIGHTS)
        memcpy(&got, CMSG_DATA(rc), sizeof got);
    char piped[32] = {0};
    if (got >= 0)
        CHECK(read(got, piped, sizeof piped - 1) == 16);
    printf("received %ld %s, a descriptor %d, reading it: %s\n", (long)n, data, got >= 0, piped);
    ERR("sendmsg with a descriptor that is not open",
        ({ memcpy(CMSG_DATA(c), &(int){999}, sizeof(int)); sendmsg(s, &m, 0); }), EBADF);
    close(ar);
    printf("sendmsg to an abstract name nobody has: %s\n", send_to(s, &ab, ablen, "x"));

    /* connected: no address */
    int sp[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sp) == 0);
    struct iovec one = {"pair", 4};
    struct msghdr pm = {.msg_iov = &one, .msg_iovlen = 1};
    printf("sendmsg without an address: %ld", (long)sendmsg(sp[0], &pm, 0));
    printf(", received %s\n", received(sp[1]));
    return t_finish();
}
