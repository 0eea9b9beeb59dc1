/* fexecve and execveat: by descriptor (plain, close-on-exec, O_PATH, a memfd copy of the
 * program), relative to a directory descriptor, AT_SYMLINK_NOFOLLOW, scripts by descriptor,
 * and the errors. The test execs itself with "--child": the child reports what it sees. */
#include "common.h"
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

extern char **environ;

static const char *base(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int child(int argc, char **argv)
{
    printf("  child argc=%d", argc);
    for (int i = 3; i < argc; i++)
        printf(" [%s]", argv[i]);
    printf("\n");
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n >= 0) {
        exe[n] = 0;
        /* a memfd shows as "/memfd:NAME (deleted)"; a file by its own name */
        printf("  child exe: %s\n", strncmp(exe, "/memfd:", 7) == 0 ? exe : base(exe));
    } else {
        printf("  child exe: %s\n", errname(errno));
    }
    /* named after the file (Linux 6.14 and later, also for execveat(fd, "", AT_EMPTY_PATH)) */
    const char *comm = read_file("/proc/self/comm");
    printf("  child comm: %s", comm ? comm : "unreadable\n");
    /* the descriptor the program was run from, when it was not close-on-exec */
    struct stat st;
    if (fstat(50, &st) == 0)
        printf("  fd 50: open, %s\n",
               S_ISREG(st.st_mode) ? "a regular file"
               : S_ISDIR(st.st_mode) ? "a directory" : "something else");
    else
        printf("  fd 50: %s\n", errname(errno));
    /* the LibOS still serves this process */
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd))
        printf("  child getcwd: %s\n", strcmp(cwd, argv[1]) == 0 ? "the scratch dir" : cwd);
    else
        printf("  child getcwd: %s\n", errname(errno));
    return 6;
}

/* Run fn in a child; print its exit status (or the errno of a failed exec, which the child
 * prints itself). */
static void run(const char *label, int (*fn)(void *), void *arg)
{
    printf("%s:\n", label);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        int e = fn(arg);
        printf("  exec failed: %s\n", errname(e));
        fflush(stdout);
        _exit(127);
    }
    int status;
    CHECK(waitpid(c, &status, 0) == c);
    if (WIFEXITED(status))
        printf("  exit %d\n", WEXITSTATUS(status));
    else
        printf("  killed by signal %d\n", WTERMSIG(status));
}

static char *self;
static char *dir_arg;

static char **args(const char *tag)
{
    static char *a[8];
    a[0] = self;
    a[1] = dir_arg;
    a[2] = "--child";
    a[3] = (char *)tag;
    a[4] = NULL;
    return a;
}

static int on_fd(int fd, const char *tag)
{
    if (fd < 0)
        return errno;
    if (fd != 50) {
        dup3(fd, 50, fcntl(fd, F_GETFD) & FD_CLOEXEC ? O_CLOEXEC : 0);
        close(fd);
    }
    fexecve(50, args(tag), environ);
    return errno;
}

static int by_fd_cloexec(void *u)
{
    (void)u;
    return on_fd(open(self, O_RDONLY | O_CLOEXEC), "cloexec");
}

static int by_fd_plain(void *u)
{
    (void)u;
    return on_fd(open(self, O_RDONLY), "plain");
}

static int by_fd_opath(void *u)
{
    (void)u;
    return on_fd(open(self, O_PATH | O_CLOEXEC), "opath");
}

static int by_raw_execveat(void *u)
{
    (void)u;
    int fd = open(self, O_RDONLY | O_CLOEXEC);
    syscall(SYS_execveat, fd, "", args("raw-empty-path"), environ, AT_EMPTY_PATH);
    return errno;
}

static int by_dirfd(void *u)
{
    (void)u;
    char d[PATH_MAX];
    snprintf(d, sizeof d, "%s", self);
    *strrchr(d, '/') = 0;
    int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    syscall(SYS_execveat, dfd, base(self), args("dirfd-relative"), environ, 0);
    return errno;
}

static int by_dirfd_inherited(void *u)
{
    (void)u;
    char d[PATH_MAX];
    snprintf(d, sizeof d, "%s", self);
    *strrchr(d, '/') = 0;
    int dfd = open(d, O_RDONLY | O_DIRECTORY);
    if (dfd < 0 || dup2(dfd, 50) < 0)
        return errno;
    syscall(SYS_execveat, 50, base(self), args("dirfd-inherited"), environ, 0);
    return errno;
}

static int by_symlink_nofollow(void *u)
{
    (void)u;
    int dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    syscall(SYS_execveat, dfd, "selflink", args("nofollow"), environ, AT_SYMLINK_NOFOLLOW);
    return errno;
}

static int by_symlink_follow(void *u)
{
    (void)u;
    int dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    syscall(SYS_execveat, dfd, "selflink", args("symlink"), environ, 0);
    return errno;
}

static int by_memfd(void *u)
{
    (void)u;
    int src = open(self, O_RDONLY | O_CLOEXEC);
    int mfd = memfd_create("fexecve-copy", MFD_CLOEXEC);
    if (src < 0 || mfd < 0)
        return errno;
    char buf[65536];
    ssize_t n;
    while ((n = read(src, buf, sizeof buf)) > 0)
        if (write(mfd, buf, n) != n)
            return errno;
    close(src);
    return on_fd(mfd, "memfd");
}

static int by_script_fd(void *u)
{
    return on_fd(open((const char *)u, O_RDONLY), "script");
}

static int by_script_fd_cloexec(void *u)
{
    return on_fd(open((const char *)u, O_RDONLY | O_CLOEXEC), "script-cloexec");
}

static int by_fd_noexec(void *u)
{
    (void)u;
    return on_fd(open("plain-data", O_RDONLY | O_CLOEXEC), "noexec");
}

static int by_fd_dir(void *u)
{
    (void)u;
    return on_fd(open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), "dir");
}

static int by_bad_fd(void *u)
{
    (void)u;
    syscall(SYS_execveat, 77, "", args("badfd"), environ, AT_EMPTY_PATH);
    return errno;
}

static int by_bad_flags(void *u)
{
    (void)u;
    syscall(SYS_execveat, AT_FDCWD, self, args("badflags"), environ, 0x4);
    return errno;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--script-interp") == 0) {
        /* run as a script's interpreter: argv[2] names the script ("/dev/fd/N") */
        printf("  interpreter got argc=%d", argc);
        for (int i = 2; i < argc; i++)
            printf(" [%s]", i == 3 ? "<dir>" : argv[i]);
        printf("\n");
        return 8;
    }
    if (argc > 2 && strcmp(argv[2], "--child") == 0)
        return child(argc, argv);
    self = self_exe();
    dir_arg = (char *)scratch_enter(argc, argv);
    /* the script names this program as its interpreter */
    char line[PATH_MAX + 64];
    snprintf(line, sizeof line, "#!%s --script-interp\n", self);
    CHECK(write_file("script", line) == 0);
    CHECK(chmod("script", 0755) == 0);
    CHECK(write_file("plain-data", "\x7f" "ELF not executable\n") == 0);
    CHECK(symlink(self, "selflink") == 0);

    run("fexecve, close-on-exec descriptor", by_fd_cloexec, NULL);
    run("fexecve, inherited descriptor", by_fd_plain, NULL);
    run("fexecve, O_PATH descriptor", by_fd_opath, NULL);
    run("execveat(fd, \"\", AT_EMPTY_PATH)", by_raw_execveat, NULL);
    run("execveat(dirfd, relative name, 0)", by_dirfd, NULL);
    run("execveat(inherited dirfd, relative name, 0)", by_dirfd_inherited, NULL);
    run("execveat of a symlink", by_symlink_follow, NULL);
    run("execveat of a symlink, AT_SYMLINK_NOFOLLOW", by_symlink_nofollow, NULL);
    run("fexecve of a memfd copy", by_memfd, NULL);
    run("fexecve of a script descriptor", by_script_fd, "script");
    run("fexecve of a close-on-exec script descriptor", by_script_fd_cloexec, "script");
    run("fexecve without execute permission", by_fd_noexec, NULL);
    run("fexecve of a directory", by_fd_dir, NULL);
    run("execveat of a closed descriptor", by_bad_fd, NULL);
    run("execveat with unknown flags", by_bad_flags, NULL);
    return t_finish();
}
