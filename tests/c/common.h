/* Shared helpers of the C behaviour tests.
 *
 * Every test prints only what is deterministic (errno names, sizes, modes, relative names),
 * never pids, inode numbers, times or host paths, so that its output natively and inside the
 * LibOS can be compared byte for byte. A test works in a scratch directory given as argv[1]
 * (default "/tmp"), which it empties first, and exits 0 only if every check passed.
 */
#ifndef OCCLUM_TEST_COMMON_H
#define OCCLUM_TEST_COMMON_H

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int t_failures;

__attribute__((unused)) static const char *errname(int e)
{
    static char buf[32];
    switch (e) {
#define E(x) case x: return #x;
    E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(ENOEXEC) E(EBADF)
    E(ECHILD) E(EAGAIN) E(ENOMEM) E(EACCES) E(EFAULT) E(ENOTBLK) E(EBUSY) E(EEXIST) E(EXDEV)
    E(ENODEV) E(ENOTDIR) E(EISDIR) E(EINVAL) E(ENFILE) E(EMFILE) E(ENOTTY) E(ETXTBSY)
    E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS) E(EMLINK) E(EPIPE) E(EDOM) E(ERANGE) E(EDEADLK)
    E(ENAMETOOLONG) E(ENOLCK) E(ENOSYS) E(ENOTEMPTY) E(ELOOP) E(ENOMSG) E(ENODATA)
    E(EOVERFLOW) E(EOPNOTSUPP) E(EAFNOSUPPORT) E(ENOTSOCK) E(ETIMEDOUT)
    E(ECONNREFUSED) E(EINPROGRESS) E(EALREADY) E(ENOKEY) E(EKEYREJECTED) E(ECANCELED)
    E(EOWNERDEAD) E(ENOTRECOVERABLE) E(ERFKILL) E(EHWPOISON)
    E(EADDRINUSE) E(EADDRNOTAVAIL) E(ECONNRESET) E(ECONNABORTED) E(ENOTCONN) E(EISCONN)
    E(EDESTADDRREQ) E(EMSGSIZE) E(EPROTOTYPE) E(ENOPROTOOPT) E(EPROTONOSUPPORT)
    E(ESOCKTNOSUPPORT) E(EPFNOSUPPORT) E(ENOBUFS) E(ENETUNREACH) E(EHOSTUNREACH)
    E(ENETDOWN) E(ESHUTDOWN) E(EIDRM) E(ENOSTR) E(ETIME)
#undef E
    case 0: return "OK";
    default:
        snprintf(buf, sizeof buf, "E#%d", e);
        return buf;
    }
}

__attribute__((unused)) static void t_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    printf("FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    t_failures++;
}

/* A condition that must hold. */
#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond))                                                                 \
            t_fail(__FILE__, __LINE__, "%s (errno %s)", #cond, errname(errno));      \
    } while (0)

/* A call that must succeed (return >= 0): prints "label: ok", yields the result. */
#define OK(label, expr)                                                              \
    ({                                                                               \
        errno = 0;                                                                   \
        long _r = (long)(expr);                                                      \
        int _e = errno;                                                              \
        if (_r < 0)                                                                  \
            t_fail(__FILE__, __LINE__, "%s: %s failed with %s", label, #expr,        \
                   errname(_e));                                                     \
        else                                                                         \
            printf("%s: ok\n", label);                                               \
        errno = _e;                                                                  \
        _r;                                                                          \
    })

/* A call that must fail with errno E: prints "label: E". */
#define ERR(label, expr, E)                                                          \
    do {                                                                             \
        errno = 0;                                                                   \
        long _r = (long)(expr);                                                      \
        int _e = errno;                                                              \
        if (_r >= 0)                                                                 \
            t_fail(__FILE__, __LINE__, "%s: %s succeeded, expected %s", label,       \
                   #expr, #E);                                                       \
        else if (_e != (E))                                                          \
            t_fail(__FILE__, __LINE__, "%s: %s gave %s, expected %s", label, #expr,  \
                   errname(_e), #E);                                                 \
        else                                                                         \
            printf("%s: %s\n", label, #E);                                           \
    } while (0)

/* Print "label: <errno name or ok>" without judging it (for values both sides must share). */
#define SHOW(label, expr)                                                            \
    ({                                                                               \
        errno = 0;                                                                   \
        long _r = (long)(expr);                                                      \
        printf("%s: %s\n", label, _r < 0 ? errname(errno) : "ok");                   \
        _r;                                                                          \
    })

__attribute__((unused)) static void rm_tree_at(int parent, const char *name)
{
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd >= 0) {
        DIR *d = fdopendir(fd);
        struct dirent *de;
        if (d) {
            while ((de = readdir(d)) != NULL) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                    continue;
                rm_tree_at(dirfd(d), de->d_name);
            }
            closedir(d);
        } else {
            close(fd);
        }
        unlinkat(parent, name, AT_REMOVEDIR);
    } else {
        unlinkat(parent, name, 0);
    }
}

__attribute__((unused)) static void mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            mkdir(buf, 0755);
            *p = '/';
        }
    }
    mkdir(buf, 0755);
}

/* This program's own path, for a test that executes itself: argv[0] is only the program's
 * file name when Occlum starts it ("occlum run /bin/exec" passes "exec", as Occlum does),
 * natively the path the test was run by. */
__attribute__((unused)) static char *self_exe(void)
{
    static char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n < 0) {
        printf("FAIL readlink /proc/self/exe: %s\n", errname(errno));
        exit(2);
    }
    buf[n] = 0;
    return buf;
}

/* Enter an empty scratch directory: argv[1] (created if missing, emptied if not) or /tmp. */
__attribute__((unused)) static const char *scratch_enter(int argc, char **argv)
{
    const char *dir = argc > 1 && argv[1][0] ? argv[1] : "/tmp";
    mkdir_p(dir);
    if (chdir(dir) != 0) {
        printf("FAIL cannot enter scratch dir: %s\n", errname(errno));
        exit(2);
    }
    if (strcmp(dir, "/tmp") != 0) {
        DIR *d = opendir(".");
        struct dirent *de;
        if (d) {
            while ((de = readdir(d)) != NULL)
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                    rm_tree_at(AT_FDCWD, de->d_name);
            closedir(d);
        }
    }
    umask(022);
    return dir;
}

__attribute__((unused)) static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Read a whole small file into a static buffer; NULL on error. */
__attribute__((unused)) static const char *read_file(const char *path)
{
    static char buf[8192];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        return NULL;
    buf[n] = 0;
    return buf;
}

__attribute__((unused)) static const char *ftype(mode_t m)
{
    if (S_ISREG(m)) return "reg";
    if (S_ISDIR(m)) return "dir";
    if (S_ISLNK(m)) return "lnk";
    if (S_ISCHR(m)) return "chr";
    if (S_ISBLK(m)) return "blk";
    if (S_ISFIFO(m)) return "fifo";
    if (S_ISSOCK(m)) return "sock";
    return "?";
}

/* Reap a child: its exit code, 128+N if signal N ended it, -1 if waitpid failed. */
__attribute__((unused)) static int wait_child(pid_t pid)
{
    int status;
    pid_t r;
    while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    if (r != pid)
        return -1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

/* Milliseconds on CLOCK_MONOTONIC, for elapsed-time checks printed as booleans. */
__attribute__((unused)) static long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

__attribute__((unused)) static int t_finish(void)
{
    if (t_failures) {
        printf("FAILED %d check(s)\n", t_failures);
        return 1;
    }
    printf("PASS\n");
    return 0;
}

#endif
