/* eventfd: counter mode (writes add, a read takes all), semaphore mode (a read takes one),
 * EAGAIN when empty or full in non-blocking mode, EINVAL for short buffers and the maximum
 * value, poll readiness, a blocked reader woken from another process. */
#include "common.h"
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>

static long rd(int fd, uint64_t *v)
{
    return (long)read(fd, v, sizeof *v);
}

static long wr(int fd, uint64_t v)
{
    return (long)write(fd, &v, sizeof v);
}

static const char *ready(int fd)
{
    struct pollfd p = {fd, POLLIN | POLLOUT, 0};
    poll(&p, 1, 0);
    static char s[32];
    snprintf(s, sizeof s, "%s%s", p.revents & POLLIN ? "in" : "-", p.revents & POLLOUT ? " out" : " -");
    return s;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    uint64_t v = 0;

    int fd = OK("eventfd", eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    printf("cloexec: %d, nonblock: %d\n", (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0,
           (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    ERR("read empty", rd(fd, &v), EAGAIN);
    printf("ready empty: %s\n", ready(fd));
    long w1 = wr(fd, 3), w2 = wr(fd, 4);
    printf("write 3: %ld, write 4: %ld\n", w1, w2);
    printf("ready: %s\n", ready(fd));
    long n = rd(fd, &v);
    printf("read: %ld value %llu\n", n, (unsigned long long)v);
    ERR("read again", rd(fd, &v), EAGAIN);
    char small[4];
    ERR("read short buffer", read(fd, small, sizeof small), EINVAL);
    ERR("write short buffer", write(fd, small, sizeof small), EINVAL);
    ERR("write the maximum", wr(fd, UINT64_MAX), EINVAL);
    printf("write max-1: %ld\n", wr(fd, UINT64_MAX - 1));
    printf("ready full: %s\n", ready(fd));
    ERR("write past full", wr(fd, 1), EAGAIN);
    printf("write 0 when full: %ld\n", wr(fd, 0));
    n = rd(fd, &v);
    printf("read full: %ld value is max-1: %d\n", n, v == UINT64_MAX - 1);
    close(fd);

    /* an initial value, and semaphore mode */
    fd = OK("eventfd semaphore", eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK));
    printf("semaphore reads:");
    for (int i = 0; i < 4; i++) {
        v = 0;
        if (rd(fd, &v) < 0)
            printf(" %s", errname(errno));
        else
            printf(" %llu", (unsigned long long)v);
    }
    printf("\n");
    wr(fd, 2);
    n = rd(fd, &v);
    printf("after write 2: %ld %llu\n", n, (unsigned long long)v);
    close(fd);
    ERR("bad flags", eventfd(0, 0x12345), EINVAL);

    /* an initial value is read back whole */
    fd = eventfd(5, 0);
    n = rd(fd, &v);
    printf("initial value: %ld %llu\n", n, (unsigned long long)v);

    /* a blocking read, woken by a child's write; the fd is shared across fork */
    fflush(stdout);
    long t0 = mono_ms(); /* before the fork: the child's 20 ms start after it */
    pid_t c = fork();
    if (c == 0) {
        usleep(20000);
        wr(fd, 9);
        _exit(0);
    }
    n = rd(fd, &v);
    printf("blocking read: %ld value %llu, waited %d\n", n, (unsigned long long)v,
           mono_ms() - t0 >= 20);
    CHECK(wait_child(c) == 0);

    /* a blocking write waits until a reader makes room */
    wr(fd, UINT64_MAX - 1);
    c = fork();
    if (c == 0) {
        usleep(20000);
        uint64_t x;
        rd(fd, &x);
        _exit(x == UINT64_MAX - 1 ? 0 : 1);
    }
    n = wr(fd, 7);
    printf("blocking write: %ld, reader %d\n", n, wait_child(c));
    n = rd(fd, &v);
    printf("left: %ld %llu\n", n, (unsigned long long)v);
    close(fd);
    return t_finish();
}
