/* timerfd: one-shot and interval timers, the expiration count a read returns, gettime after
 * expiry, TFD_TIMER_ABSTIME on CLOCK_MONOTONIC and CLOCK_REALTIME, disarming, the old value
 * from settime, non-blocking EAGAIN, poll readiness, and the errors. */
#include "common.h"
#include <poll.h>
#include <stdint.h>
#include <sys/timerfd.h>

static long rd(int fd, uint64_t *v)
{
    *v = 0;
    return (long)read(fd, v, sizeof *v);
}

static struct itimerspec its(long value_ms, long interval_ms)
{
    struct itimerspec t;
    t.it_value.tv_sec = value_ms / 1000;
    t.it_value.tv_nsec = (value_ms % 1000) * 1000000;
    t.it_interval.tv_sec = interval_ms / 1000;
    t.it_interval.tv_nsec = (interval_ms % 1000) * 1000000;
    return t;
}

static int armed(const struct itimerspec *t)
{
    return t->it_value.tv_sec != 0 || t->it_value.tv_nsec != 0;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    uint64_t n;
    long r;

    /* one-shot: a blocking read returns one expiration */
    int fd = OK("timerfd_create monotonic", timerfd_create(CLOCK_MONOTONIC, 0));
    struct itimerspec t = its(20, 0), cur;
    long t0 = mono_ms();
    OK("settime one-shot 20 ms", timerfd_settime(fd, 0, &t, NULL));
    CHECK(timerfd_gettime(fd, &cur) == 0);
    printf("armed before expiry: %d, not more than asked: %d\n", armed(&cur),
           cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec <= 20000000);
    r = rd(fd, &n);
    printf("read: %ld expirations %llu, waited %d\n", r, (unsigned long long)n, mono_ms() - t0 >= 19);
    CHECK(timerfd_gettime(fd, &cur) == 0);
    printf("after expiry: armed %d interval %ld\n", armed(&cur), (long)cur.it_interval.tv_nsec);
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    ERR("read again, nonblocking", rd(fd, &n), EAGAIN);
    close(fd);

    /* interval: expirations accumulate between reads */
    fd = OK("timerfd_create nonblock", timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
    printf("cloexec: %d\n", (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    ERR("read unarmed", rd(fd, &n), EAGAIN);
    t = its(10, 10);
    OK("settime interval 10 ms", timerfd_settime(fd, 0, &t, NULL));
    usleep(65000);
    r = rd(fd, &n);
    printf("read after 65 ms: %ld, at least 5 expirations: %d\n", r, n >= 5);
    struct pollfd p = {fd, POLLIN, 0};
    int pr = poll(&p, 1, 1000);
    printf("poll waits for the next: %d revents POLLIN %d\n", pr, (p.revents & POLLIN) != 0);
    CHECK(timerfd_gettime(fd, &cur) == 0);
    printf("interval read back: %ld ms\n", cur.it_interval.tv_nsec / 1000000);

    /* settime returns the old setting; zero disarms */
    struct itimerspec zero = its(0, 0), old;
    OK("disarm", timerfd_settime(fd, 0, &zero, &old));
    printf("old: armed %d interval %ld ms\n", armed(&old), old.it_interval.tv_nsec / 1000000);
    CHECK(timerfd_gettime(fd, &cur) == 0);
    printf("disarmed: armed %d\n", armed(&cur));
    rd(fd, &n); /* an expiration may have come before the disarm */
    usleep(20000);
    ERR("read after disarm", rd(fd, &n), EAGAIN);
    close(fd);

    /* absolute times */
    fd = timerfd_create(CLOCK_MONOTONIC, 0);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    t = its(0, 0);
    t.it_value = now;
    t.it_value.tv_nsec += 20000000;
    if (t.it_value.tv_nsec >= 1000000000) {
        t.it_value.tv_sec++;
        t.it_value.tv_nsec -= 1000000000;
    }
    OK("settime absolute monotonic", timerfd_settime(fd, TFD_TIMER_ABSTIME, &t, NULL));
    CHECK(timerfd_gettime(fd, &cur) == 0);
    printf("gettime gives a relative value: %d\n", cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec <= 20000000);
    r = rd(fd, &n);
    clock_gettime(CLOCK_MONOTONIC, &now);
    printf("read: %ld expirations %llu, at or after the target: %d\n", r, (unsigned long long)n,
           now.tv_sec > t.it_value.tv_sec ||
               (now.tv_sec == t.it_value.tv_sec && now.tv_nsec >= t.it_value.tv_nsec));
    /* an absolute time in the past expires at once; with an interval it counts the periods
     * since */
    clock_gettime(CLOCK_MONOTONIC, &now);
    t = its(0, 10);
    t.it_value = now;
    t.it_value.tv_sec -= 1;
    OK("settime absolute, 1 s ago, 10 ms interval", timerfd_settime(fd, TFD_TIMER_ABSTIME, &t, NULL));
    r = rd(fd, &n);
    printf("read: %ld, about 100 periods: %d\n", r, n >= 100 && n < 200);
    close(fd);

    fd = OK("timerfd_create realtime", timerfd_create(CLOCK_REALTIME, 0));
    clock_gettime(CLOCK_REALTIME, &now);
    t = its(0, 0);
    t.it_value = now;
    t.it_value.tv_nsec += 10000000;
    if (t.it_value.tv_nsec >= 1000000000) {
        t.it_value.tv_sec++;
        t.it_value.tv_nsec -= 1000000000;
    }
    OK("settime absolute realtime", timerfd_settime(fd, TFD_TIMER_ABSTIME, &t, NULL));
    r = rd(fd, &n);
    printf("read: %ld expirations %llu\n", r, (unsigned long long)n);
    close(fd);
    fd = OK("timerfd_create boottime", timerfd_create(CLOCK_BOOTTIME, 0));
    close(fd);

    /* a timer shared with a child: the child reads it */
    fd = timerfd_create(CLOCK_MONOTONIC, 0);
    t = its(15, 0);
    timerfd_settime(fd, 0, &t, NULL);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        uint64_t x;
        _exit(rd(fd, &x) == 8 && x == 1 ? 0 : 1);
    }
    printf("child read the shared timer: %d\n", wait_child(c));
    close(fd);

    /* errors */
    ERR("bad clock", timerfd_create(12345, 0), EINVAL);
    ERR("bad flags", timerfd_create(CLOCK_MONOTONIC, 0x4000000), EINVAL);
    fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    t = its(0, 0);
    t.it_value.tv_nsec = 1000000000;
    ERR("nsec too large", timerfd_settime(fd, 0, &t, NULL), EINVAL);
    t = its(10, 0);
    ERR("settime bad flags", timerfd_settime(fd, 0x100, &t, NULL), EINVAL);
    char small[4];
    timerfd_settime(fd, 0, &t, NULL);
    usleep(20000);
    ERR("read short buffer", read(fd, small, sizeof small), EINVAL);
    close(fd);
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    ERR("settime on a pipe", timerfd_settime(pfd[0], 0, &t, NULL), EINVAL);
    ERR("gettime on a closed fd", timerfd_gettime(99, &cur), EBADF);
    return t_finish();
}
