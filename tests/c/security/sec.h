/* Shared helpers of the escape tests. They only make sense inside the LibOS: natively many of
 * the attempts succeed (that is what they detect).
 *
 * Arguments: argv[1] the hostfs mount point inside the LibOS (default /host), argv[2] the
 * absolute host path of a secret file that lies outside every hostfs mount and contains
 * "HOST-SECRET", argv[3] the pid of a host process (the test harness) that must be invisible.
 *
 * Every probe prints one line "<probe>: refused <ERRNO or SIGNAL>", "<probe>: contained" (it
 * worked but stayed inside the LibOS) or "<probe>: ESCAPED <what>"; the program exits 0 only
 * if nothing escaped. Probes that may get the caller killed run in a forked child.
 */
#ifndef OCCLUM_SEC_H
#define OCCLUM_SEC_H

#include "../common.h"
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static const char *MOUNT = "/host";
static const char *SECRET = "/etc/shadow";
static int HOSTPID = 1;
static int escaped;

__attribute__((unused)) static void sec_init(int argc, char **argv)
{
    if (argc > 1 && argv[1][0])
        MOUNT = argv[1];
    if (argc > 2 && argv[2][0])
        SECRET = argv[2];
    if (argc > 3)
        HOSTPID = atoi(argv[3]);
    setvbuf(stdout, NULL, _IOLBF, 0);
}

__attribute__((unused)) static const char *signame(int s)
{
    static char buf[16];
    switch (s) {
    case SIGSYS: return "SIGSYS";
    case SIGKILL: return "SIGKILL";
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGILL: return "SIGILL";
    case SIGABRT: return "SIGABRT";
    case SIGTRAP: return "SIGTRAP";
    default:
        snprintf(buf, sizeof buf, "SIG#%d", s);
        return buf;
    }
}

__attribute__((unused)) static void escape(const char *label, const char *what)
{
    printf("%s: ESCAPED %s\n", label, what);
    escaped++;
}

/* The contents behind fd: an escape if they are the host secret. Closes fd. */
__attribute__((unused)) static void judge_fd(const char *label, int fd)
{
    char buf[512] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0 && strstr(buf, "HOST-SECRET"))
        escape(label, "read the host secret");
    else
        printf("%s: contained\n", label);
}

/* openat(dirfd, path): refused, or opened something that is not the host's secret. */
__attribute__((unused)) static void try_open(const char *label, int dirfd, const char *path)
{
    int fd = openat(dirfd, path, O_RDONLY);
    if (fd < 0) {
        printf("%s: refused %s\n", label, errname(errno));
        return;
    }
    judge_fd(label, fd);
}

typedef long (*probe_fn)(void);

/* Run fn in a child. A negative result or the child's death by a signal is a refusal; when
 * `strict`, only EPERM/EACCES/ENOSYS count (another errno means the host kernel saw the call).
 */
__attribute__((unused)) static void probe_ex(const char *label, probe_fn fn, int strict)
{
    int p[2];
    if (pipe(p) != 0) {
        escape(label, "pipe failed");
        return;
    }
    fflush(stdout);
    pid_t c = fork();
    if (c < 0) {
        printf("%s: fork failed %s\n", label, errname(errno));
        escaped++;
        return;
    }
    if (c == 0) {
        close(p[0]);
        errno = 0;
        long r = fn();
        long out[2] = {r, errno};
        write(p[1], out, sizeof out);
        _exit(0);
    }
    close(p[1]);
    long out[2];
    ssize_t n = read(p[0], out, sizeof out);
    close(p[0]);
    int st = 0;
    waitpid(c, &st, 0);
    if (n != (ssize_t)sizeof out) {
        if (WIFSIGNALED(st))
            printf("%s: refused %s\n", label, signame(WTERMSIG(st)));
        else
            escape(label, "child died without an answer");
        return;
    }
    if (out[0] >= 0) {
        char what[64];
        snprintf(what, sizeof what, "returned %ld", out[0]);
        escape(label, what);
        return;
    }
    int e = (int)out[1];
    if (strict && e != EPERM && e != EACCES && e != ENOSYS) {
        char what[64];
        snprintf(what, sizeof what, "reached the host kernel (%s)", errname(e));
        escape(label, what);
        return;
    }
    printf("%s: refused %s\n", label, errname(e));
}

#define PROBE(label, fn) probe_ex(label, fn, 0)
#define PROBE_STRICT(label, fn) probe_ex(label, fn, 1)

__attribute__((unused)) static int sec_finish(void)
{
    if (escaped) {
        printf("ESCAPES: %d\n", escaped);
        return 1;
    }
    printf("ALL REFUSED\n");
    return 0;
}

#endif
