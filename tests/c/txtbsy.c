/* A file that is a running program cannot be opened for writing or truncated (ETXTBSY) while
 * any process runs it; it can once that process is gone. Never writes to a program: on a
 * failure it only closes what it opened. */
#include "common.h"
#include <sys/wait.h>

static void no_write_open(const char *label, const char *path, int flags, int expect_busy)
{
    errno = 0;
    int fd = open(path, flags);
    int e = errno;
    if (fd >= 0)
        close(fd);
    printf("%s: %s\n", label, fd >= 0 ? "ok" : errname(e));
    CHECK(expect_busy ? (fd < 0 && e == ETXTBSY) : fd >= 0);
}

static off_t size_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[2], "--exit") == 0)
        return 4;
    if (argc > 2 && strcmp(argv[2], "--wait") == 0) {
        /* run as "copy": wait until the parent closes the pipe */
        char c;
        while (read(0, &c, 1) > 0)
            ;
        return 3;
    }
    const char *self = self_exe();
    const char *dir = scratch_enter(argc, argv);
    off_t self_size = size_of(self);

    no_write_open("open self O_WRONLY", self, O_WRONLY, 1);
    no_write_open("open self O_RDWR", self, O_RDWR, 1);
    no_write_open("open self O_RDONLY", self, O_RDONLY, 0);
    ERR("truncate self (same size)", truncate(self, self_size), ETXTBSY);

    /* a copy of this program, run by a child */
    int in = open(self, O_RDONLY), out = open("copy", O_WRONLY | O_CREAT | O_TRUNC, 0755);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        CHECK(write(out, buf, n) == n);
    close(in);
    close(out);
    no_write_open("open copy O_WRONLY before it runs", "copy", O_WRONLY, 0);
    int p[2];
    CHECK(pipe(p) == 0);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        dup2(p[0], 0);
        close(p[0]);
        close(p[1]);
        char *a[] = {"./copy", (char *)dir, "--wait", NULL};
        execv(a[0], a);
        _exit(127);
    }
    close(p[0]);
    /* wait until the child runs the copy: its /proc/PID/exe names it */
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/%d/exe", c);
    for (int i = 0; i < 2000; i++) {
        ssize_t l = readlink(link, target, sizeof target - 1);
        if (l > 5) {
            target[l] = 0;
            if (strcmp(target + l - 5, "/copy") == 0)
                break;
        }
        usleep(1000);
    }
    no_write_open("open running copy O_WRONLY", "copy", O_WRONLY, 1);
    no_write_open("open running copy O_RDWR|O_APPEND", "copy", O_RDWR | O_APPEND, 1);
    ERR("truncate running copy", truncate("copy", size_of("copy")), ETXTBSY);
    ERR("creat over running copy", open("copy", O_WRONLY | O_CREAT | O_TRUNC, 0755), ETXTBSY);
    /* its name can go: unlink and rename are allowed */
    OK("rename running copy", rename("copy", "copy2"));
    no_write_open("open renamed running copy O_WRONLY", "copy2", O_WRONLY, 1);
    close(p[1]);
    int status;
    CHECK(waitpid(c, &status, 0) == c);
    printf("copy exit: %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    no_write_open("open copy O_WRONLY after it ended", "copy2", O_WRONLY, 0);
    OK("truncate copy after it ended", truncate("copy2", 10));

    /* the other way round: a file open for writing is not executed, even by a close-on-exec
     * descriptor of the caller itself */
    in = open(self, O_RDONLY);
    out = open("copy3", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    while ((n = read(in, buf, sizeof buf)) > 0)
        CHECK(write(out, buf, n) == n);
    close(in);
    char *a3[] = {"./copy3", (char *)dir, "--exit", NULL};
    ERR("execve of a file open for writing", execv(a3[0], a3), ETXTBSY);
    fflush(stdout);
    c = fork();
    if (c == 0) {
        execv(a3[0], a3);
        _exit(100 + (errno & 0x7f));
    }
    CHECK(waitpid(c, &status, 0) == c);
    printf("child's execve of it, the parent writing: %s\n",
           WIFEXITED(status) && WEXITSTATUS(status) >= 100 ? errname(WEXITSTATUS(status) - 100)
                                                          : "ran");
    close(out);
    fflush(stdout);
    c = fork();
    if (c == 0) {
        execv(a3[0], a3);
        _exit(100 + (errno & 0x7f));
    }
    CHECK(waitpid(c, &status, 0) == c);
    printf("once closed, it runs: exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return t_finish();
}
