/* prctl: PR_SET_NAME/PR_GET_NAME (truncated to 15 bytes, per thread, inherited by fork),
 * PR_SET_PDEATHSIG (a child gets the signal when its parent dies), PR_SET_DUMPABLE,
 * PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER, EINVAL. The names as /proc shows them are
 * in comm.c. */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>

static void *thread_name(void *arg)
{
    (void)arg;
    prctl(PR_SET_NAME, "worker-thread");
    char *own = calloc(1, 32);
    prctl(PR_GET_NAME, own);
    return own;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    char name[32] = {0};
    OK("PR_SET_NAME", prctl(PR_SET_NAME, "renamed"));
    OK("PR_GET_NAME", prctl(PR_GET_NAME, name));
    printf("name: %s\n", name);
    OK("PR_SET_NAME long", prctl(PR_SET_NAME, "a-very-long-process-name"));
    memset(name, 0, sizeof name);
    prctl(PR_GET_NAME, name);
    printf("truncated: %s (%zu bytes)\n", name, strlen(name));

    /* names are per thread */
    prctl(PR_SET_NAME, "main-thread");
    pthread_t t;
    char *res;
    CHECK(pthread_create(&t, NULL, thread_name, NULL) == 0);
    CHECK(pthread_join(t, (void **)&res) == 0);
    printf("thread: %s\n", res);
    free(res);
    memset(name, 0, sizeof name);
    prctl(PR_GET_NAME, name);
    printf("main kept: %s\n", name);

    /* a forked child inherits the name; exec sets it from the file name */
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        char n2[32] = {0};
        prctl(PR_GET_NAME, n2);
        _exit(strcmp(n2, "main-thread") == 0 ? 0 : 1);
    }
    printf("child inherits the name: %d\n", wait_child(c));

    /* PR_SET_PDEATHSIG: the grandchild is signalled when its parent (the child) dies */
    int p[2];
    CHECK(pipe(p) == 0);
    c = fork();
    if (c == 0) {
        pid_t g = fork();
        if (g == 0) {
            close(p[0]);
            sigset_t s;
            sigemptyset(&s);
            sigaddset(&s, SIGUSR1);
            sigprocmask(SIG_BLOCK, &s, NULL);
            prctl(PR_SET_PDEATHSIG, SIGUSR1);
            int sig = 0;
            prctl(PR_GET_PDEATHSIG, &sig);
            write(p[1], sig == SIGUSR1 ? "s" : "?", 1);
            struct timespec ts = {5, 0};
            siginfo_t si;
            int got = sigtimedwait(&s, &si, &ts);
            write(p[1], got == SIGUSR1 ? "k" : "t", 1);
            _exit(0);
        }
        char b;
        read(p[0], &b, 1); /* the grandchild has set its death signal */
        _exit(b == 's' ? 0 : 1);
    }
    close(p[1]);
    printf("PR_GET_PDEATHSIG read back: %d\n", wait_child(c) == 0);
    char b = 0;
    CHECK(read(p[0], &b, 1) == 1);
    printf("grandchild got its parent-death signal: %d\n", b == 'k');
    close(p[0]);
    ERR("PR_SET_PDEATHSIG bad signal", prctl(PR_SET_PDEATHSIG, 99), EINVAL);

    /* a few flags that read back */
    printf("dumpable: %d\n", prctl(PR_GET_DUMPABLE));
    OK("PR_SET_DUMPABLE 0", prctl(PR_SET_DUMPABLE, 0));
    printf("dumpable: %d\n", prctl(PR_GET_DUMPABLE));
    prctl(PR_SET_DUMPABLE, 1);
    OK("PR_SET_NO_NEW_PRIVS", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    printf("no_new_privs: %d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
    ERR("clearing no_new_privs", prctl(PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0), EINVAL);
    int sub = -1;
    OK("PR_SET_CHILD_SUBREAPER", prctl(PR_SET_CHILD_SUBREAPER, 1));
    prctl(PR_GET_CHILD_SUBREAPER, &sub);
    printf("subreaper: %d\n", sub);

    /* an orphaned grandchild now comes to us */
    CHECK(pipe(p) == 0);
    c = fork();
    if (c == 0) {
        pid_t mid = getpid();
        if (fork() == 0) {
            while (getppid() == mid)
                usleep(1000);
            write(p[1], "r", 1);
            _exit(5);
        }
        _exit(0);
    }
    CHECK(wait_child(c) == 0);
    CHECK(read(p[0], &b, 1) == 1);
    int status;
    pid_t w = wait(&status);
    printf("orphan reaped by us: %d, status %d\n", w > 0, WEXITSTATUS(status));
    prctl(PR_SET_CHILD_SUBREAPER, 0);

    ERR("unknown option", prctl(0x7fff), EINVAL);
    return t_finish();
}
