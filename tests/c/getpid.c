/* getpid/getppid/gettid agree with each other across fork, threads and reparenting; printed as
 * relations, never as values. */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>

static pid_t tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

struct seen {
    pid_t pid, ppid, tid;
};

static void *look(void *arg)
{
    struct seen *s = arg;
    s->pid = getpid();
    s->ppid = getppid();
    s->tid = tid();
    return NULL;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    pid_t me = getpid(), parent = getppid();
    printf("main thread: tid == pid: %d\n", tid() == me);
    printf("raw getpid == getpid: %d\n", (pid_t)syscall(SYS_getpid) == me);
    printf("ppid differs from pid: %d, positive: %d\n", parent != me, parent > 0);

    /* /proc/self names this process */
    char link[64] = {0};
    CHECK(readlink("/proc/self", link, sizeof link - 1) > 0);
    printf("/proc/self is getpid: %d\n", atoi(link) == me);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d", (int)me);
    printf("own task dir exists: %d\n", access(path, F_OK) == 0);

    /* threads share pid and ppid, each has its own tid */
    struct seen s[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, look, &s[i]) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    int same_pid = 1, own_tid = 1;
    for (int i = 0; i < 4; i++) {
        same_pid &= s[i].pid == me && s[i].ppid == parent;
        own_tid &= s[i].tid != me && s[i].tid > 0;
        for (int j = 0; j < i; j++)
            own_tid &= s[i].tid != s[j].tid;
    }
    printf("threads share pid/ppid: %d, distinct tids: %d\n", same_pid, own_tid);

    /* a thread's tid is a /proc/self/task entry */
    snprintf(path, sizeof path, "/proc/self/task/%d", (int)s[0].tid);
    /* the kernel clears the tid (and wakes the joiner) a little before the task is gone */
    for (int i = 0; i < 1000 && access(path, F_OK) == 0; i++)
        usleep(1000);
    printf("exited thread's task dir gone: %d\n", access(path, F_OK) != 0);

    /* fork: the child's pid is fork's return, its ppid is us */
    int p[2];
    CHECK(pipe(p) == 0);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        struct seen cs = {getpid(), getppid(), tid()};
        struct seen th;
        pthread_t x;
        pthread_create(&x, NULL, look, &th);
        pthread_join(x, NULL);
        int ok = cs.ppid == me && cs.pid != me && cs.tid == cs.pid && th.pid == cs.pid &&
                 th.ppid == me && th.tid != cs.pid;
        pid_t mine = cs.pid;
        write(p[1], &mine, sizeof mine);
        _exit(ok ? 0 : 1);
    }
    pid_t reported = 0;
    CHECK(read(p[0], &reported, sizeof reported) == sizeof reported);
    printf("child sees parent, thread in child consistent: %d\n", wait_child(c) == 0);
    printf("child's getpid is fork's return: %d\n", reported == c);

    /* vfork: the child runs with its own pid while we wait */
    static volatile pid_t vpid; /* written by the vfork child, which shares our memory */
    c = vfork();
    if (c == 0) {
        vpid = getpid();
        _exit(getppid() == me ? 0 : 1);
    }
    printf("vfork child: ppid ok %d, pid is vfork's return %d\n", wait_child(c) == 0, vpid == c);

    /* reparenting: a grandchild sees its ppid change when its parent exits */
    c = fork();
    if (c == 0) {
        pid_t middle = getpid();
        pid_t g = fork();
        if (g == 0) {
            while (getppid() == middle)
                usleep(1000);
            pid_t np = getppid();
            write(p[1], &np, sizeof np);
            _exit(0);
        }
        _exit(0);
    }
    CHECK(wait_child(c) == 0);
    pid_t newparent = 0;
    CHECK(read(p[0], &newparent, sizeof newparent) == sizeof newparent);
    printf("orphan reparented away from its dead parent: %d\n", newparent != c && newparent > 0);
    printf("kill(getpid(), 0): %s\n", kill(getpid(), 0) == 0 ? "ok" : errname(errno));
    return t_finish();
}
