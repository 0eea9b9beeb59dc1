/* Clocks: CLOCK_MONOTONIC never goes back (also across threads and processes), CLOCK_REALTIME
 * agrees with time() and gettimeofday, the coarse, boottime and raw clocks, clock_getres,
 * CPU-time clocks advance with work, times() and getrusage, the vDSO and the raw calls agree,
 * and the errors. */
#include "common.h"
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/times.h>

static long long ns(const struct timespec *t)
{
    return t->tv_sec * 1000000000LL + t->tv_nsec;
}

static void burn(int ms)
{
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    volatile unsigned long x = 0;
    do {
        for (int i = 0; i < 10000; i++)
            x += i;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    } while (ns(&b) - ns(&a) < ms * 1000000LL);
}

static struct timespec thread_saw;
static void *read_clock(void *arg)
{
    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &thread_saw);
    return NULL;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct timespec a, b;

    /* monotonic: 100000 readings never go back */
    int back = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < 100000; i++) {
        clock_gettime(CLOCK_MONOTONIC, &b);
        back += ns(&b) < ns(&a);
        a = b;
    }
    printf("monotonic went back: %d times\n", back);
    printf("nanoseconds in range: %d\n", b.tv_nsec >= 0 && b.tv_nsec < 1000000000);
    /* a thread and a child read a later time */
    pthread_t t;
    clock_gettime(CLOCK_MONOTONIC, &a);
    CHECK(pthread_create(&t, NULL, read_clock, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("thread's reading in between: %d\n", ns(&thread_saw) >= ns(&a) && ns(&thread_saw) <= ns(&b));
    int p[2];
    CHECK(pipe(p) == 0);
    clock_gettime(CLOCK_MONOTONIC, &a);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        struct timespec x;
        clock_gettime(CLOCK_MONOTONIC, &x);
        write(p[1], &x, sizeof x);
        _exit(0);
    }
    struct timespec child;
    CHECK(read(p[0], &child, sizeof child) == sizeof child);
    wait_child(c);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("child's reading in between: %d\n", ns(&child) >= ns(&a) && ns(&child) <= ns(&b));

    /* the same clock from the vDSO and from the raw system call */
    struct timespec v, r;
    clock_gettime(CLOCK_MONOTONIC, &v);
    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &r);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("raw call between two vDSO readings: %d\n", ns(&r) >= ns(&v) && ns(&r) <= ns(&b));

    /* realtime against time() and gettimeofday */
    struct timespec rt;
    struct timeval tv;
    time_t t1 = time(NULL);
    clock_gettime(CLOCK_REALTIME, &rt);
    gettimeofday(&tv, NULL);
    time_t t2 = time(NULL);
    /* time() reads the coarse clock, which may lag a tick behind */
    printf("time() brackets CLOCK_REALTIME: %d\n", t1 <= rt.tv_sec && rt.tv_sec <= t2 + 1);
    printf("gettimeofday agrees: %d, usec in range %d\n",
           tv.tv_sec >= rt.tv_sec && tv.tv_sec - rt.tv_sec <= 1, tv.tv_usec >= 0 && tv.tv_usec < 1000000);
    printf("after 2020: %d\n", rt.tv_sec > 1577836800);
    time_t viaptr = 0;
    time(&viaptr);
    printf("time(&t) fills t: %d\n", viaptr >= t1);
    struct timezone tz;
    OK("gettimeofday with a timezone", gettimeofday(&tv, (void *)&tz));

    /* other clocks */
    struct timespec coarse, boot, raw, mono;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    OK("CLOCK_MONOTONIC_COARSE", clock_gettime(CLOCK_MONOTONIC_COARSE, &coarse));
    OK("CLOCK_MONOTONIC_RAW", clock_gettime(CLOCK_MONOTONIC_RAW, &raw));
    OK("CLOCK_BOOTTIME", clock_gettime(CLOCK_BOOTTIME, &boot));
    OK("CLOCK_REALTIME_COARSE", clock_gettime(CLOCK_REALTIME_COARSE, &coarse));
    OK("CLOCK_TAI", clock_gettime(CLOCK_TAI, &raw));
    printf("boottime >= monotonic: %d\n", ns(&boot) >= ns(&mono));

    /* resolutions */
    struct timespec res;
    OK("clock_getres MONOTONIC", clock_getres(CLOCK_MONOTONIC, &res));
    printf("  1 ns: %d\n", res.tv_sec == 0 && res.tv_nsec == 1);
    OK("clock_getres REALTIME", clock_getres(CLOCK_REALTIME, &res));
    printf("  1 ns: %d\n", res.tv_sec == 0 && res.tv_nsec == 1);
    OK("clock_getres MONOTONIC_COARSE", clock_getres(CLOCK_MONOTONIC_COARSE, &res));
    printf("  coarser than 1 ns: %d\n", res.tv_nsec > 1);
    OK("clock_getres with NULL", clock_getres(CLOCK_MONOTONIC, NULL));

    /* CPU time clocks and times() advance with work */
    struct timespec p0, p1, th0, th1;
    struct tms tm0, tm1;
    clock_t ticks0 = times(&tm0);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &p0);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &th0);
    burn(60);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &th1);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &p1);
    clock_t ticks1 = times(&tm1);
    printf("thread CPU time advanced >= 60 ms: %d\n", ns(&th1) - ns(&th0) >= 60000000LL);
    printf("process CPU time >= thread's: %d\n", ns(&p1) - ns(&p0) >= ns(&th1) - ns(&th0));
    long hz = sysconf(_SC_CLK_TCK);
    printf("CLK_TCK: %ld\n", hz);
    printf("times(): elapsed advanced %d, user+system advanced %d\n", ticks1 > ticks0,
           (tm1.tms_utime + tm1.tms_stime) > (tm0.tms_utime + tm0.tms_stime));
    struct rusage ru;
    OK("getrusage", getrusage(RUSAGE_SELF, &ru));
    printf("rusage user time >= 50 ms: %d\n", ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec +
                                                     ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec >= 50000);
    /* a child's CPU time shows in cutime once it is reaped */
    c = fork();
    if (c == 0) {
        burn(50);
        _exit(0);
    }
    wait_child(c);
    times(&tm1);
    printf("children's CPU time counted: %d\n", tm1.tms_cutime + tm1.tms_cstime >= (clock_t)(hz / 50));
    OK("getrusage children", getrusage(RUSAGE_CHILDREN, &ru));
    printf("  >= 40 ms: %d\n", ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec +
                                    ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec >= 40000);
    /* another process's CPU clock */
    clockid_t cid;
    printf("clock_getcpuclockid(self): %s\n", errname(clock_getcpuclockid(0, &cid)));
    OK("read it", clock_gettime(cid, &a));

    /* errors (raw calls: the C libraries differ in their checks) */
    ERR("bad clock", syscall(SYS_clock_gettime, 12345, &a), EINVAL);
    ERR("bad pointer", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, (void *)8), EFAULT);
    ERR("clock_getres bad clock", syscall(SYS_clock_getres, 12345, &a), EINVAL);
    return t_finish();
}
