/* Scheduling: sched_yield, sched_getaffinity/setaffinity (restrict to one CPU and back, per
 * thread, EINVAL for an empty set), sched_getscheduler/getparam, priority ranges,
 * getpriority/setpriority/nice (raising the nice value, a child's own), getcpu. */
#include "common.h"
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>

static int first_cpu(const cpu_set_t *s)
{
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, s))
            return i;
    return -1;
}

static void *pin_thread(void *arg)
{
    int cpu = (int)(long)arg;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    long ok = sched_setaffinity(0, sizeof one, &one) == 0;
    cpu_set_t now;
    sched_getaffinity(0, sizeof now, &now);
    ok &= CPU_COUNT(&now) == 1 && CPU_ISSET(cpu, &now);
    unsigned c = 99;
    syscall(SYS_getcpu, &c, NULL, NULL);
    ok &= (int)c == cpu;
    return (void *)ok;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    OK("sched_yield", sched_yield());

    cpu_set_t orig, s;
    OK("sched_getaffinity", sched_getaffinity(0, sizeof orig, &orig));
    int n = CPU_COUNT(&orig);
    printf("at least one CPU: %d, no more than sysconf says: %d\n", n >= 1,
           n <= sysconf(_SC_NPROCESSORS_CONF));
    long raw = syscall(SYS_sched_getaffinity, 0, sizeof orig, &s);
    printf("raw call returns the mask size in bytes, a multiple of 8: %d\n", raw > 0 && raw % 8 == 0);
    int cpu = first_cpu(&orig);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    OK("pin to one CPU", sched_setaffinity(0, sizeof one, &one));
    sched_getaffinity(0, sizeof s, &s);
    printf("now: %d CPU, the one asked %d\n", CPU_COUNT(&s), CPU_ISSET(cpu, &s) != 0);
    unsigned c = 99, node = 99;
    OK("getcpu", syscall(SYS_getcpu, &c, &node, NULL));
    printf("running on it: %d, node 0: %d\n", (int)c == cpu, node == 0);

    /* a forked child inherits the mask */
    fflush(stdout);
    pid_t ch = fork();
    if (ch == 0) {
        cpu_set_t k;
        sched_getaffinity(0, sizeof k, &k);
        _exit(CPU_COUNT(&k) == 1 && CPU_ISSET(cpu, &k) ? 0 : 1);
    }
    printf("child inherits the mask: %d\n", wait_child(ch));
    OK("restore", sched_setaffinity(0, sizeof orig, &orig));
    sched_getaffinity(0, sizeof s, &s);
    printf("restored: %d\n", CPU_EQUAL(&s, &orig));

    /* a thread's mask is its own */
    pthread_t t;
    void *ok;
    CHECK(pthread_create(&t, NULL, pin_thread, (void *)(long)cpu) == 0);
    CHECK(pthread_join(t, &ok) == 0);
    sched_getaffinity(0, sizeof s, &s);
    printf("thread pinned itself: %ld, main unchanged: %d\n", (long)ok, CPU_EQUAL(&s, &orig));

    cpu_set_t empty;
    CPU_ZERO(&empty);
    ERR("empty mask", sched_setaffinity(0, sizeof empty, &empty), EINVAL);
    ERR("no such process", sched_getaffinity(0x3ffffff0, sizeof s, &s), ESRCH);
    ERR("mask too small for the kernel", syscall(SYS_sched_getaffinity, 0, 1, &s), EINVAL);

    /* policy and parameters (raw calls: musl's wrappers are ENOSYS stubs) */
    int pol = (int)syscall(SYS_sched_getscheduler, 0);
    printf("policy: %s\n", pol == SCHED_OTHER ? "SCHED_OTHER" : "other");
    struct sched_param sp;
    OK("sched_getparam", syscall(SYS_sched_getparam, 0, &sp));
    printf("priority: %d\n", sp.sched_priority);
    printf("SCHED_OTHER range: %d..%d\n", sched_get_priority_min(SCHED_OTHER),
           sched_get_priority_max(SCHED_OTHER));
    printf("SCHED_FIFO range: %d..%d\n", sched_get_priority_min(SCHED_FIFO),
           sched_get_priority_max(SCHED_FIFO));
    ERR("range of a bad policy", sched_get_priority_max(12345), EINVAL);
    sp.sched_priority = 5;
    ERR("SCHED_OTHER with priority 5", syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, &sp), EINVAL);
    sp.sched_priority = 0;
    OK("SCHED_BATCH", syscall(SYS_sched_setscheduler, 0, SCHED_BATCH, &sp));
    printf("policy now SCHED_BATCH: %d\n", syscall(SYS_sched_getscheduler, 0) == SCHED_BATCH);
    OK("back to SCHED_OTHER", syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, &sp));
    struct timespec rr;
    OK("sched_rr_get_interval", sched_rr_get_interval(0, &rr));

    /* nice values: raising is always allowed; children get their own */
    errno = 0;
    int prio = getpriority(PRIO_PROCESS, 0);
    printf("getpriority: in range %d (%s)\n", prio >= -20 && prio <= 19, errname(errno));
    ch = fork();
    if (ch == 0) {
        errno = 0;
        int r = nice(3);
        int e = errno;
        int now = getpriority(PRIO_PROCESS, 0);
        if (r != prio + 3 || e != 0 || now != prio + 3)
            _exit(1);
        if (setpriority(PRIO_PROCESS, 0, prio + 5) != 0 || getpriority(PRIO_PROCESS, 0) != prio + 5)
            _exit(2);
        _exit(0);
    }
    printf("child raised its nice value: %d\n", wait_child(ch));
    errno = 0;
    printf("ours unchanged: %d\n", getpriority(PRIO_PROCESS, 0) == prio);
    ch = fork();
    if (ch == 0) {
        pause();
        _exit(0);
    }
    int target = prio + 7 > 19 ? 19 : prio + 7;
    OK("setpriority of a child", setpriority(PRIO_PROCESS, ch, target));
    printf("child's value read back: %d\n", getpriority(PRIO_PROCESS, ch) == target);
    kill(ch, SIGKILL);
    wait_child(ch);
    ERR("setpriority of no process", setpriority(PRIO_PROCESS, 0x3ffffff0, 1), ESRCH);
    ERR("setpriority bad which", setpriority(99, 0, 1), EINVAL);
    errno = 0;
    printf("nice(0): %d (%s)\n", nice(0) == prio, errname(errno));
    return t_finish();
}
