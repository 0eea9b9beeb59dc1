/* pipe/pipe2: data through a pipe between processes, EOF, EPIPE, O_NONBLOCK, large transfer. */
#include "common.h"
#include <signal.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    int p[2];
    OK("pipe", pipe(p));
    CHECK(write(p[1], "abc", 3) == 3);
    char buf[65536];
    CHECK(read(p[0], buf, sizeof buf) == 3);
    close(p[1]);
    printf("read at EOF: %ld\n", (long)read(p[0], buf, sizeof buf));
    close(p[0]);

    OK("pipe2 nonblock", pipe2(p, O_NONBLOCK | O_CLOEXEC));
    ERR("empty nonblocking read", read(p[0], buf, 1), EAGAIN);
    printf("cloexec: %d\n", (fcntl(p[0], F_GETFD) & FD_CLOEXEC) != 0);
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    ERR("write without reader", write(p[1], "x", 1), EPIPE);
    close(p[1]);
    ERR("lseek on pipe", ({ int q[2]; pipe(q); long r = lseek(q[0], 0, SEEK_SET); int e = errno; close(q[0]); close(q[1]); errno = e; r; }), ESPIPE);

    /* 8 MiB from a child to the parent, checksummed */
    CHECK(pipe(p) == 0);
    pid_t c = fork();
    if (c == 0) {
        close(p[0]);
        for (int i = 0; i < 128; i++) {
            memset(buf, 'a' + i % 26, sizeof buf);
            for (size_t off = 0; off < sizeof buf;) {
                ssize_t n = write(p[1], buf + off, sizeof buf - off);
                if (n <= 0)
                    _exit(1);
                off += n;
            }
        }
        _exit(0);
    }
    close(p[1]);
    unsigned long total = 0, sum = 0;
    ssize_t n;
    while ((n = read(p[0], buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            sum = sum * 31 + (unsigned char)buf[i];
        total += n;
    }
    close(p[0]);
    int status;
    CHECK(waitpid(c, &status, 0) == c);
    printf("transferred %lu bytes checksum %lx child exit %d\n", total, sum, WEXITSTATUS(status));

    /* stdin of a child replaced by a pipe through dup2 */
    int q[2], r[2];
    CHECK(pipe(q) == 0 && pipe(r) == 0);
    c = fork();
    if (c == 0) {
        dup2(q[0], 0);
        dup2(r[1], 1);
        close(q[0]), close(q[1]), close(r[0]), close(r[1]);
        char b[16];
        ssize_t k = read(0, b, sizeof b);
        for (ssize_t i = 0; i < k; i++)
            b[i] = b[i] >= 'a' && b[i] <= 'z' ? b[i] - 32 : b[i];
        write(1, b, k);
        _exit(0);
    }
    close(q[0]), close(r[1]);
    CHECK(write(q[1], "shout", 5) == 5);
    close(q[1]);
    memset(buf, 0, 16);
    CHECK(read(r[0], buf, 15) == 5);
    printf("child answered: %s\n", buf);
    close(r[0]);
    waitpid(c, &status, 0);
    long sz = fcntl(p[0], F_GETPIPE_SZ);
    (void)sz;
    return t_finish();
}
