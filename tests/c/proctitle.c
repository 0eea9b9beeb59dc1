/* /proc/PID/cmdline and /proc/PID/environ read the process's memory, as Linux does: a server
 * that renames its processes by overwriting its argv strings (PostgreSQL's "postgres:
 * checkpointer", setproctitle(3)) shows the new name in ps, and a title longer than the
 * arguments that runs on into the environment is read up to its NUL. */
#include "common.h"

extern char **environ;

static size_t read_proc(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return (size_t)-1;
    size_t n = 0;
    ssize_t got;
    while (n < cap && (got = read(fd, buf + n, cap - n)) > 0)
        n += (size_t)got;
    close(fd);
    return n;
}

static int all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* Runs ``rename`` in a child, then returns what the parent reads of the child's cmdline. */
static size_t child_cmdline(void (*rename)(char *, size_t, size_t), char *area, size_t arglen,
                            size_t total, char *buf, size_t cap)
{
    int ready[2], done[2];
    CHECK(pipe(ready) == 0 && pipe(done) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        char c = 0;
        rename(area, arglen, total);
        CHECK(write(ready[1], &c, 1) == 1);
        CHECK(read(done[0], &c, 1) >= 0);
        _exit(0);
    }
    char c;
    CHECK(read(ready[0], &c, 1) == 1);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    size_t n = read_proc(path, buf, cap);
    CHECK(write(done[1], &c, 1) == 1);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && status == 0);
    close(ready[0]), close(ready[1]), close(done[0]), close(done[1]);
    return n;
}

#define TITLE "pt: worker" /* shorter than any argv[0] of this test and a NUL */

/* PostgreSQL's way: the title, then NULs over the rest of the arguments and environment */
static void padded_title(char *area, size_t arglen, size_t total)
{
    (void)arglen;
    memset(area, 0, total);
    memcpy(area, TITLE, sizeof TITLE);
}

/* setproctitle's way when the title is longer than the arguments: it runs on into the
 * environment, the argument area's last byte is no longer a NUL */
static void long_title(char *area, size_t arglen, size_t total)
{
    size_t len = arglen + (total - arglen) / 2;
    memset(area, 'x', len);
    memcpy(area, TITLE, sizeof TITLE - 1);
    area[len] = 0;
}

int main(int argc, char **argv)
{
    static char buf[1 << 16];
    char *area = argv[0];
    char *arg_end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
    size_t arglen = (size_t)(arg_end - area);
    CHECK(arglen > sizeof TITLE);

    size_t n = read_proc("/proc/self/cmdline", buf, sizeof buf);
    CHECK(n == arglen && memcmp(buf, area, n) == 0);
    printf("cmdline: the argument strings\n");

    size_t envlen = 0;
    if (environ[0] != NULL) {
        int last = 0;
        while (environ[last + 1] != NULL)
            last++;
        char *env_end = environ[last] + strlen(environ[last]) + 1;
        envlen = (size_t)(env_end - environ[0]);
        CHECK(environ[0] == arg_end); /* the kernel puts them right after the arguments */
        n = read_proc("/proc/self/environ", buf, sizeof buf);
        CHECK(n == envlen && memcmp(buf, environ[0], n) == 0);
        printf("environ: the environment strings\n");
        /* a program that edits a string in place (putenv's strings) shows it */
        char saved = environ[0][0];
        environ[0][0] = '#';
        n = read_proc("/proc/self/environ", buf, sizeof buf);
        CHECK(n == envlen && buf[0] == '#');
        environ[0][0] = saved;
        printf("environ: an edited string shows\n");
    }
    size_t total = arglen + envlen;

    n = child_cmdline(padded_title, area, arglen, total, buf, sizeof buf);
    /* the argument area's end is still a NUL: the whole area, title and padding */
    CHECK(n == arglen);
    CHECK(memcmp(buf, TITLE, sizeof TITLE) == 0);
    CHECK(all_zero(buf + sizeof TITLE, n - sizeof TITLE));
    printf("cmdline of a renamed child: its title, padded\n");

    if (envlen > 2 && total < 4000) {
        n = child_cmdline(long_title, area, arglen, total, buf, sizeof buf);
        size_t want = arglen + (total - arglen) / 2 + 1;
        CHECK(n == want);
        CHECK(memcmp(buf, TITLE, sizeof TITLE - 1) == 0 && buf[n - 1] == 0);
        CHECK(memchr(buf, 0, n - 1) == NULL);
        printf("cmdline of a long title: up to its NUL, in the environment\n");
    }

    /* a parent's own title is read by its child too */
    memset(area, 0, arglen);
    memcpy(area, TITLE, sizeof TITLE);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/cmdline", (int)parent);
        size_t m = read_proc(path, buf, sizeof buf);
        _exit(m == arglen && strcmp(buf, TITLE) == 0 ? 0 : 1);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    printf("cmdline of the parent, read by its child: the title\n");

    if (t_failures)
        return 1;
    printf("PASS\n");
    return 0;
}
