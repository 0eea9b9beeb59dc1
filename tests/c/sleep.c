/* nanosleep and clock_nanosleep: relative and absolute (TIMER_ABSTIME) sleeps last at least as
 * long as asked; a handled signal interrupts them with EINTR and the time remaining (> 0, and
 * not written for an absolute sleep); EINVAL for bad arguments. */
#include "common.h"
#include <signal.h>
#include <sys/syscall.h>
#include <sys/time.h>

static void on_alarm(int sig)
{
    (void)sig;
}

static long ts_ms(const struct timespec *ts)
{
    return ts->tv_sec * 1000L + ts->tv_nsec / 1000000;
}

static void add_ms(struct timespec *ts, long ms)
{
    ts->tv_nsec += (ms % 1000) * 1000000;
    ts->tv_sec += ms / 1000 + ts->tv_nsec / 1000000000;
    ts->tv_nsec %= 1000000000;
}

static void alarm_in_ms(int ms)
{
    struct itimerval it = {{0, 0}, {0, ms * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: sleeps return EINTR */
    sigaction(SIGALRM, &sa, NULL);

    long t0 = mono_ms();
    OK("nanosleep 20 ms", nanosleep(&(struct timespec){0, 20 * 1000000}, NULL));
    printf("  slept at least 20 ms: %d\n", mono_ms() - t0 >= 20);
    OK("nanosleep zero", nanosleep(&(struct timespec){0, 0}, NULL));

    t0 = mono_ms();
    printf("clock_nanosleep relative monotonic: %s\n",
           errname(clock_nanosleep(CLOCK_MONOTONIC, 0, &(struct timespec){0, 20 * 1000000}, NULL)));
    printf("  slept at least 20 ms: %d\n", mono_ms() - t0 >= 20);
    printf("clock_nanosleep relative realtime: %s\n",
           errname(clock_nanosleep(CLOCK_REALTIME, 0, &(struct timespec){0, 5 * 1000000}, NULL)));
    printf("clock_nanosleep relative boottime: %s\n",
           errname(clock_nanosleep(CLOCK_BOOTTIME, 0, &(struct timespec){0, 5 * 1000000}, NULL)));

    /* absolute: until a point on the clock */
    struct timespec target, now;
    clock_gettime(CLOCK_MONOTONIC, &target);
    add_ms(&target, 25);
    printf("clock_nanosleep absolute monotonic: %s\n",
           errname(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &target, NULL)));
    clock_gettime(CLOCK_MONOTONIC, &now);
    printf("  woke at or after the target: %d\n",
           now.tv_sec > target.tv_sec || (now.tv_sec == target.tv_sec && now.tv_nsec >= target.tv_nsec));
    clock_gettime(CLOCK_REALTIME, &target);
    add_ms(&target, 10);
    printf("clock_nanosleep absolute realtime: %s\n",
           errname(clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &target, NULL)));
    t0 = mono_ms();
    printf("absolute in the past: %s, at once %d\n",
           errname(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &(struct timespec){1, 0}, NULL)),
           mono_ms() - t0 < 1000);

    /* EINTR with the time remaining */
    struct timespec rem = {-1, -1};
    alarm_in_ms(30);
    t0 = mono_ms();
    ERR("nanosleep interrupted", nanosleep(&(struct timespec){2, 0}, &rem), EINTR);
    long slept = mono_ms() - t0;
    printf("  remaining > 0: %d, < 2 s: %d, with the time slept at least the whole: %d\n",
           rem.tv_sec >= 0 && ts_ms(&rem) > 0, ts_ms(&rem) < 2000, ts_ms(&rem) + slept >= 1990);
    rem = (struct timespec){-1, -1};
    alarm_in_ms(30);
    int r = clock_nanosleep(CLOCK_MONOTONIC, 0, &(struct timespec){2, 0}, &rem);
    printf("clock_nanosleep relative interrupted: %s, remaining in (0, 2 s): %d\n", errname(r),
           ts_ms(&rem) > 0 && ts_ms(&rem) < 2000);
    rem = (struct timespec){-1, -1};
    clock_gettime(CLOCK_MONOTONIC, &target);
    add_ms(&target, 2000);
    alarm_in_ms(30);
    r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &target, &rem);
    printf("clock_nanosleep absolute interrupted: %s, remaining untouched: %d\n", errname(r),
           rem.tv_sec == -1 && rem.tv_nsec == -1);
    /* a sleep resumed with the remaining time adds up to the whole */
    struct timespec req = {0, 80 * 1000000};
    alarm_in_ms(20);
    t0 = mono_ms();
    while (nanosleep(&req, &req) < 0 && errno == EINTR)
        ;
    printf("resumed sleep lasted at least the whole: %d\n", mono_ms() - t0 >= 80);

    /* with SA_RESTART the C library still returns EINTR: sleeps are never restarted */
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    alarm_in_ms(20);
    ERR("nanosleep with SA_RESTART", nanosleep(&(struct timespec){2, 0}, &rem), EINTR);

    /* errors (the raw calls: some C libraries check before the kernel does) */
    ERR("nanosleep nsec too large", syscall(SYS_nanosleep, &(struct timespec){0, 1000000000}, NULL), EINVAL);
    ERR("nanosleep negative", syscall(SYS_nanosleep, &(struct timespec){-1, 0}, NULL), EINVAL);
    ERR("nanosleep bad pointer", syscall(SYS_nanosleep, (void *)8, NULL), EFAULT);
    ERR("clock_nanosleep bad clock",
        syscall(SYS_clock_nanosleep, 1234, 0, &(struct timespec){0, 1000}, NULL), EINVAL);
    ERR("clock_nanosleep thread cpu clock",
        syscall(SYS_clock_nanosleep, CLOCK_THREAD_CPUTIME_ID, 0, &(struct timespec){0, 1000}, NULL),
        EOPNOTSUPP);
    ERR("clock_nanosleep nsec too large",
        syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &(struct timespec){0, 1000000000}, NULL),
        EINVAL);

    /* sleep() and usleep() */
    printf("sleep(0): %u\n", sleep(0));
    t0 = mono_ms();
    OK("usleep 10 ms", usleep(10000));
    printf("  slept at least 10 ms: %d\n", mono_ms() - t0 >= 10);
    sa.sa_flags = 0;
    sigaction(SIGALRM, &sa, NULL);
    alarm_in_ms(30);
    unsigned left = sleep(2);
    printf("sleep(2) cut short: seconds left 1 or 2: %d\n", left >= 1 && left <= 2);
    return t_finish();
}
