/* Process and thread names as /proc shows them: /proc/self/comm and /proc/self/stat follow
 * PR_SET_NAME, /proc/self/task/TID/comm is each thread's own, writing /proc/self/comm renames
 * (cut at 15 bytes, a newline kept), pthread_setname_np renames another thread through its
 * task/TID/comm, /proc/self/task lists every thread, another process's comm cannot be
 * written, and a fresh program's name comes from its file name. */
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

static pthread_barrier_t started, named;

/* Waits while the main thread looks at it from /proc, then reports its own name. */
static void *waiting_thread(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&started);
    pthread_barrier_wait(&named);
    char name[32] = {0};
    prctl(PR_GET_NAME, name);
    return strdup(name);
}

/* The number of entries of /proc/self/task, and whether each has a comm and a stat whose
 * pid is the entry's own name. */
static void list_tasks(int *count, int *consistent)
{
    *count = 0;
    *consistent = 1;
    DIR *d = opendir("/proc/self/task");
    if (!d) {
        *consistent = 0;
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        ++*count;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", de->d_name);
        const char *st = read_file(path);
        if (!st || atol(st) != atol(de->d_name))
            *consistent = 0;
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", de->d_name);
        if (!read_file(path))
            *consistent = 0;
    }
    closedir(d);
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
    fd = open("/proc/self/comm", O_WRONLY | O_TRUNC);
    if (fd >= 0) {
        printf("write with a newline: %ld\n", (long)write(fd, "nl\n", 3));
        memset(name, 0, sizeof name);
        prctl(PR_GET_NAME, name);
        printf("newline kept: %d\n", strcmp(name, "nl\n") == 0);
        printf("long write: %ld\n", (long)write(fd, "0123456789abcdefghij", 20));
        memset(name, 0, sizeof name);
        prctl(PR_GET_NAME, name);
        printf("after a long write: %s\n", name);
        close(fd);
    }
    struct stat st;
    CHECK(stat("/proc/self/comm", &st) == 0);
    printf("/proc/self/comm mode: %o\n", (unsigned)(st.st_mode & 07777));

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

    /* every thread is listed; another thread renamed through its task/TID/comm */
    int count, consistent;
    list_tasks(&count, &consistent);
    printf("tasks with one thread: %d, consistent %d\n", count, consistent);
    pthread_barrier_init(&started, NULL, 2);
    pthread_barrier_init(&named, NULL, 2);
    CHECK(pthread_create(&t, NULL, waiting_thread, NULL) == 0);
    pthread_barrier_wait(&started);
    list_tasks(&count, &consistent);
    printf("tasks with two threads: %d, consistent %d\n", count, consistent);
    printf("pthread_setname_np of the other thread: %s\n", errname(pthread_setname_np(t, "by-main")));
    char other[32] = {0};
    printf("pthread_getname_np: %s", errname(pthread_getname_np(t, other, sizeof other)));
    printf(" %s\n", other);
    pthread_barrier_wait(&named);
    CHECK(pthread_join(t, (void **)&res) == 0);
    printf("the thread's own PR_GET_NAME: %s\n", res);
    free(res);

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
    fd = open(path, O_WRONLY);
    printf("open the child's comm for writing: %s\n", fd >= 0 ? "ok" : errname(errno));
    if (fd >= 0) {
        errno = 0;
        long w = (long)write(fd, "parent", 6);
        printf("write the child's comm: %ld %s\n", w, errname(w < 0 ? errno : 0));
        close(fd);
    }
    printf("child's comm after that: %s\n", comm(path));
    kill(c, SIGKILL);
    wait_child(c);
    return t_finish();
}
