/* Process and thread names as /proc shows them: /proc/self/comm and /proc/self/stat follow
 * PR_SET_NAME, /proc/self/task/TID/comm is each thread's own, writing /proc/self/comm renames,
 * and a fresh program's name comes from its file name. */
#include "common.h"
#include <libgen.h>
#include <signal.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static const char *comm(const char *path)
{
    const char *s = read_file(path);
    if (!s)
        return errname(errno);
    static char buf[64];
    size_t n = strcspn(s, "\n");
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, s, n);
    buf[n] = 0;
    return buf;
}

/* The name between the parentheses of /proc/self/stat. */
static const char *stat_name(void)
{
    const char *s = read_file("/proc/self/stat");
    static char buf[64];
    const char *a = s ? strchr(s, '(') : NULL, *b = s ? strrchr(s, ')') : NULL;
    if (!a || !b || b - a - 1 >= (long)sizeof buf)
        return "(unreadable)";
    memcpy(buf, a + 1, b - a - 1);
    buf[b - a - 1] = 0;
    return buf;
}

static void *named_thread(void *arg)
{
    (void)arg;
    prctl(PR_SET_NAME, "worker-thread");
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld/comm", (long)syscall(SYS_gettid));
    char *r = malloc(128);
    snprintf(r, 128, "%s", comm(path));
    return r;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    /* at start: the program's file name (cut to 15 bytes) */
    char want[16];
    snprintf(want, sizeof want, "%s", basename(argv[0]));
    printf("initial comm is the file name: %d\n", strcmp(comm("/proc/self/comm"), want) == 0);
    printf("initial stat name is the file name: %d\n", strcmp(stat_name(), want) == 0);

    prctl(PR_SET_NAME, "renamed");
    printf("/proc/self/comm: %s\n", comm("/proc/self/comm"));
    printf("/proc/self/stat: %s\n", stat_name());
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)getpid());
    printf("/proc/PID/comm: %s\n", comm(path));
    prctl(PR_SET_NAME, "a-very-long-process-name");
    printf("long name: %s\n", comm("/proc/self/comm"));

    /* writing comm renames */
    int fd = open("/proc/self/comm", O_WRONLY);
    printf("open comm for writing: %s\n", fd >= 0 ? "ok" : errname(errno));
    if (fd >= 0) {
        printf("write: %ld\n", (long)write(fd, "via-comm", 8));
        close(fd);
    }
    char name[32] = {0};
    prctl(PR_GET_NAME, name);
    printf("PR_GET_NAME after writing comm: %s\n", name);

    /* threads: each has its own */
    prctl(PR_SET_NAME, "main-thread");
    pthread_t t;
    char *res;
    CHECK(pthread_create(&t, NULL, named_thread, NULL) == 0);
    CHECK(pthread_join(t, (void **)&res) == 0);
    printf("thread's task comm: %s\n", res);
    free(res);
    snprintf(path, sizeof path, "/proc/self/task/%ld/comm", (long)syscall(SYS_gettid));
    printf("main's task comm: %s, process comm %s\n", comm(path), comm("/proc/self/comm"));

    /* a child's own rename shows in its /proc entry, seen from the parent */
    int p[2];
    CHECK(pipe(p) == 0);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        prctl(PR_SET_NAME, "the-child");
        write(p[1], "n", 1);
        pause();
        _exit(0);
    }
    char b;
    CHECK(read(p[0], &b, 1) == 1);
    snprintf(path, sizeof path, "/proc/%d/comm", (int)c);
    printf("child's comm from the parent: %s\n", comm(path));
    kill(c, SIGKILL);
    wait_child(c);
    return t_finish();
}
