/* exit_group from a thread: every thread of the process dies (even blocked ones), the parent
 * sees the status; exit() in a thread runs atexit handlers; a thread's own exit ends only it;
 * a fatal signal to one thread kills the whole process. */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>

static int block_fd;   /* read end of a pipe nobody writes: threads block on it */
static int report_fd;  /* write end of the report pipe */

static void *blocker(void *arg)
{
    (void)arg;
    char c;
    read(block_fd, &c, 1);
    write(report_fd, "B", 1); /* never reached: the thread dies blocked */
    return NULL;
}

static void *spinner(void *arg)
{
    (void)arg;
    volatile unsigned long n = 0;
    for (;;)
        n++;
    return NULL;
}

static void *sleeper(void *arg)
{
    (void)arg;
    for (;;)
        usleep(1000);
    return NULL;
}

static int mode;

static void *ender(void *arg)
{
    (void)arg;
    usleep(20000);
    switch (mode) {
    case 0: _exit(42);
    case 1: syscall(SYS_exit_group, 5); break;
    case 2: exit(3);
    case 3: kill(getpid(), SIGKILL); break;
    case 4: raise(SIGTERM); break;
    case 5: *(volatile int *)8 = 1; break;
    }
    for (;;)
        pause();
    return NULL;
}

static void on_exit_handler(void)
{
    write(report_fd, "A", 1);
}

/* A child with blocked, spinning and sleeping threads; one thread ends the process. */
static void run(const char *label, int m, int main_joins)
{
    int blk[2], rep[2];
    CHECK(pipe(blk) == 0 && pipe(rep) == 0);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        close(blk[1]);
        close(rep[0]);
        block_fd = blk[0];
        report_fd = rep[1];
        mode = m;
        atexit(on_exit_handler);
        pthread_t t[4];
        pthread_create(&t[0], NULL, blocker, NULL);
        pthread_create(&t[1], NULL, spinner, NULL);
        pthread_create(&t[2], NULL, sleeper, NULL);
        pthread_create(&t[3], NULL, ender, NULL);
        if (main_joins)
            pthread_join(t[0], NULL); /* never returns */
        else
            /* the main thread leaves first; the process lives on (the raw call: glibc's
             * pthread_exit would unwind through a dlopen'ed libgcc_s) */
            syscall(SYS_exit, 0);
        _exit(99);
    }
    close(blk[0]);
    close(rep[1]);
    int code = wait_child(c);
    char buf[16] = {0};
    ssize_t n = read(rep[0], buf, sizeof buf - 1); /* EOF once every thread is gone */
    printf("%s: status %d, report \"%s\"\n", label, code, n > 0 ? buf : "");
    errno = 0;
    printf("%s: kill after reap: %s\n", label, kill(c, 0) < 0 ? errname(errno) : "alive");
    close(blk[1]);
    close(rep[0]);
}

static void *thread_exit_only(void *arg)
{
    (void)arg;
    syscall(SYS_exit, 0); /* ends this thread alone */
    return NULL;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    run("_exit in a thread", 0, 1);
    run("exit_group syscall", 1, 1);
    run("exit() in a thread", 2, 1);
    run("SIGKILL from a thread", 3, 1);
    run("raise(SIGTERM)", 4, 1);
    run("fault in a thread", 5, 1);
    run("main thread gone first", 0, 0);

    /* the exit syscall in a thread: the rest of the process continues */
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        pthread_t t;
        pthread_create(&t, NULL, thread_exit_only, NULL);
        usleep(20000);
        _exit(17);
    }
    printf("SYS_exit in a thread, process exits later: %d\n", wait_child(c));

    /* exit in the main thread of a single-threaded child, for comparison */
    c = fork();
    if (c == 0)
        syscall(SYS_exit, 4);
    printf("SYS_exit of the only thread: %d\n", wait_child(c));
    return t_finish();
}
