/* The state /proc shows of a process and of a thread (field 3 of stat, the State: line of
 * status): the reader itself is running (R); a child blocked in read() on a pipe, or in a
 * recvfrom() with an address on a socketpair, sleeps (S), also while a handled signal
 * interrupts and restarts that call; SIGSTOP stops it (T) and SIGCONT
 * lets it sleep again; a child that exited and was not waited for is a zombie (Z), with its
 * directory still there, and once reaped its directory is gone (ENOENT); a thread blocked in
 * read() sleeps in task/TID/stat while its process's own entry shows the reader. */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

/* Field 3 of a stat file, or the errno name when it cannot be read. */
static const char *state_of(const char *path)
{
    static char buf[32];
    const char *s = read_file(path);
    if (!s)
        return errname(errno);
    const char *b = strrchr(s, ')');
    if (!b || b[1] != ' ' || !b[2])
        return "(malformed)";
    buf[0] = b[2];
    buf[1] = 0;
    return buf;
}

/* The State: line of a status file, without its key and tab. */
static const char *status_state(const char *path)
{
    static char buf[64];
    const char *s = read_file(path);
    if (!s)
        return errname(errno);
    const char *at = strstr(s, "\nState:\t");
    if (!at)
        return "(no State line)";
    at += 8;
    size_t n = strcspn(at, "\n");
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, at, n);
    buf[n] = 0;
    return buf;
}

/* Poll a stat file until field 3 is one of `want` (up to 10 s); print what was seen last. */
static void await_state(const char *label, const char *path, const char *want)
{
    long until = mono_ms() + 10000;
    const char *seen;
    for (;;) {
        seen = state_of(path);
        if (strlen(seen) == 1 && strchr(want, seen[0]))
            break;
        if (mono_ms() > until) {
            t_fail(__FILE__, __LINE__, "%s: still %s after 10 s, expected one of %s", label,
                   seen, want);
            return;
        }
        usleep(5000);
    }
    printf("%s: %s\n", label, seen);
}

static void on_usr1(int sig)
{
    (void)sig;
}

/* Poll a stat file for `ms` milliseconds; print any state seen other than R and S. */
static void only_running_or_sleeping(const char *label, const char *path, int ms)
{
    char other[16] = {0};
    long until = mono_ms() + ms;
    while (mono_ms() < until) {
        const char *s = state_of(path);
        if ((strlen(s) != 1 || !strchr("RS", s[0])) && !strstr(other, s) &&
            strlen(other) + strlen(s) < sizeof other - 1)
            strcat(other, s);
    }
    printf("%s: %s\n", label, other[0] ? other : "only R and S");
}

static int thread_pipe[2];
static volatile pid_t thread_tid;

static void *blocked_thread(void *arg)
{
    (void)arg;
    thread_tid = (pid_t)syscall(SYS_gettid);
    char b;
    if (read(thread_pipe[0], &b, 1) != 1)
        return (void *)1;
    return NULL;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    char path[64], spath[64];

    printf("own state: %s\n", state_of("/proc/self/stat"));
    printf("own State line: %s\n", status_state("/proc/self/status"));

    /* a child blocked in read() on a pipe */
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t c = fork();
    if (c == 0) {
        close(p[1]);
        char b;
        _exit(read(p[0], &b, 1) == 1 ? 0 : 1);
    }
    close(p[0]);
    snprintf(path, sizeof path, "/proc/%d/stat", (int)c);
    snprintf(spath, sizeof spath, "/proc/%d/status", (int)c);
    await_state("child blocked in read", path, "S");
    printf("its State line: %s\n", status_state(spath));

    CHECK(kill(c, SIGSTOP) == 0);
    await_state("after SIGSTOP", path, "T");
    printf("its State line: %s\n", status_state(spath));
    CHECK(kill(c, SIGCONT) == 0);
    await_state("after SIGCONT", path, "S");

    /* it exits; until it is waited for it is a zombie */
    CHECK(write(p[1], "x", 1) == 1);
    await_state("after it exited", path, "Z");
    printf("its State line: %s\n", status_state(spath));
    snprintf(spath, sizeof spath, "/proc/%d", (int)c);
    struct stat st;
    printf("its directory: %s\n", stat(spath, &st) == 0 ? "ok" : errname(errno));
    int status = 0;
    CHECK(waitpid(c, &status, 0) == c);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    printf("after waitpid: %s\n", state_of(path));
    close(p[1]);

    /* a child blocked in recvfrom() with an address on a socketpair */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    c = fork();
    if (c == 0) {
        close(sv[0]);
        struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
        sigaction(SIGUSR1, &sa, NULL);
        char b;
        struct sockaddr_un from;
        socklen_t len = sizeof from;
        _exit(recvfrom(sv[1], &b, 1, 0, (struct sockaddr *)&from, &len) == 1 ? 0 : 1);
    }
    close(sv[1]);
    snprintf(path, sizeof path, "/proc/%d/stat", (int)c);
    snprintf(spath, sizeof spath, "/proc/%d/status", (int)c);
    await_state("child blocked in recvfrom", path, "S");
    printf("its State line: %s\n", status_state(spath));
    /* a handled signal interrupts the call and it restarts: sleeping or running throughout */
    for (int i = 0; i < 5; i++) {
        CHECK(kill(c, SIGUSR1) == 0);
        only_running_or_sleeping("while a signal interrupts it", path, 100);
    }
    await_state("after the signals", path, "S");
    CHECK(write(sv[0], "x", 1) == 1);
    CHECK(waitpid(c, &status, 0) == c);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(sv[0]);

    /* a thread blocked in read() */
    CHECK(pipe(thread_pipe) == 0);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, blocked_thread, NULL) == 0);
    while (!thread_tid)
        usleep(1000);
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)thread_tid);
    snprintf(spath, sizeof spath, "/proc/self/task/%d/status", (int)thread_tid);
    await_state("thread blocked in read", path, "S");
    printf("its State line: %s\n", status_state(spath));
    printf("the process meanwhile: %s\n", state_of("/proc/self/stat"));
    CHECK(write(thread_pipe[1], "x", 1) == 1);
    void *ret;
    CHECK(pthread_join(th, &ret) == 0 && ret == NULL);
    return t_finish();
}
