/* posix_spawn file actions (open, close, dup2) and attributes (setpgroup, setsigmask,
 * setsigdef, resetids), each reported back by the spawned copy of this program. */
#include "common.h"
#include <signal.h>
#include <spawn.h>

extern char **environ;

/* The spawned side: report what it inherited, on its stdout. */
static int child(int argc, char **argv)
{
    const char *what = argv[3];
    if (strcmp(what, "fds") == 0) {
        /* fd 3 opened by a file action, argv[4] closed by one, stdout a dup2'd pipe */
        char buf[32] = {0};
        ssize_t n = read(3, buf, sizeof buf - 1);
        printf("fd 3 reads: %s\n", n > 0 ? buf : "(nothing)");
        int closed = atoi(argv[4]);
        errno = 0;
        int r = fcntl(closed, F_GETFD);
        printf("closed fd: %s\n", r < 0 ? errname(errno) : "still open");
        int kept = atoi(argv[5]);
        printf("fd without action kept: %d\n", fcntl(kept, F_GETFD) >= 0);
        int cloexec = atoi(argv[6]);
        errno = 0;
        r = fcntl(cloexec, F_GETFD);
        printf("cloexec fd: %s\n", r < 0 ? errname(errno) : "still open");
    } else if (strcmp(what, "pgrp") == 0) {
        printf("own group: %d\n", getpgrp() == getpid());
        printf("group of parent: %d\n", getpgrp() == getpgid(getppid()));
    } else if (strcmp(what, "sig") == 0) {
        sigset_t cur;
        sigprocmask(SIG_SETMASK, NULL, &cur);
        struct sigaction sa1, sa2;
        sigaction(SIGUSR1, NULL, &sa1);
        sigaction(SIGUSR2, NULL, &sa2);
        printf("blocked: USR1=%d USR2=%d TERM=%d\n", sigismember(&cur, SIGUSR1),
               sigismember(&cur, SIGUSR2), sigismember(&cur, SIGTERM));
        printf("USR1 %s, USR2 %s\n", sa1.sa_handler == SIG_IGN ? "ignored" : "default",
               sa2.sa_handler == SIG_IGN ? "ignored" : "default");
    } else if (strcmp(what, "ids") == 0) {
        printf("euid==uid: %d egid==gid: %d\n", geteuid() == getuid(), getegid() == getgid());
    }
    (void)argc;
    fflush(stdout);
    return 0;
}

/* Spawn "argv0 dir --child what extra..." with stdout into the pipe; print its report. */
static void spawn_report(const char *label, char **argv, const char *dir,
                         posix_spawn_file_actions_t *fa_in, posix_spawnattr_t *attr,
                         char *const extra[])
{
    int p[2], q[2];
    CHECK(pipe(q) == 0);
    /* out of the way of the fds the file actions name */
    p[0] = fcntl(q[0], F_DUPFD, 20);
    p[1] = fcntl(q[1], F_DUPFD, 20);
    close(q[0]);
    close(q[1]);
    posix_spawn_file_actions_t own, *fa = fa_in;
    if (!fa) {
        posix_spawn_file_actions_init(&own);
        fa = &own;
    }
    posix_spawn_file_actions_adddup2(fa, p[1], 1);
    posix_spawn_file_actions_addclose(fa, p[0]);
    char *args[12] = {self_exe(), (char *)dir, "--child"};
    int k = 3;
    for (int i = 0; extra[i] && k < 11; i++)
        args[k++] = extra[i];
    args[k] = NULL;
    pid_t pid = -1;
    fflush(stdout);
    int r = posix_spawn(&pid, self_exe(), fa, attr, args, environ);
    printf("%s: spawn %s\n", label, errname(r));
    close(p[1]);
    char buf[1024];
    ssize_t n, total = 0;
    while (total < (ssize_t)sizeof buf - 1 && (n = read(p[0], buf + total, sizeof buf - 1 - total)) > 0)
        total += n;
    buf[total] = 0;
    close(p[0]);
    if (r == 0)
        printf("%s", buf);
    if (r == 0)
        printf("%s: exit %d\n", label, wait_child(pid));
    if (!fa_in)
        posix_spawn_file_actions_destroy(&own);
}

int main(int argc, char **argv)
{
    if (argc > 3 && strcmp(argv[2], "--child") == 0)
        return child(argc, argv);
    const char *dir = scratch_enter(argc, argv);
    CHECK(write_file("input", "from-input") == 0);

    /* file actions */
    /* above the fds the file actions name */
    int fd = open("input", O_RDONLY);
    int closed = fcntl(fd, F_DUPFD, 10);
    int kept = fcntl(fd, F_DUPFD, 10);
    int cloexec = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    close(fd);
    CHECK(closed >= 0 && kept >= 0 && cloexec >= 0);
    char s_closed[16], s_kept[16], s_cloexec[16];
    snprintf(s_closed, sizeof s_closed, "%d", closed);
    snprintf(s_kept, sizeof s_kept, "%d", kept);
    snprintf(s_cloexec, sizeof s_cloexec, "%d", cloexec);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 3, "input", O_RDONLY, 0);
    posix_spawn_file_actions_addclose(&fa, closed);
    spawn_report("file actions", argv, dir, &fa, NULL,
                 (char *[]){"fds", s_closed, s_kept, s_cloexec, NULL});
    posix_spawn_file_actions_destroy(&fa);
    printf("parent's fds untouched: %d\n", fcntl(closed, F_GETFD) >= 0);

    /* a file action that fails makes the spawn fail */
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 3, "missing/file", O_RDONLY, 0);
    spawn_report("open missing", argv, dir, &fa, NULL, (char *[]){"fds", "0", "0", "0", NULL});
    posix_spawn_file_actions_destroy(&fa);

    /* an open that creates a file in the child */
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 5, "created", O_WRONLY | O_CREAT | O_EXCL, 0640);
    spawn_report("open creat", argv, dir, &fa, NULL, (char *[]){"ids", NULL});
    posix_spawn_file_actions_destroy(&fa);
    struct stat st;
    CHECK(stat("created", &st) == 0);
    printf("created mode: %o\n", st.st_mode & 0777);

    /* process group: POSIX_SPAWN_SETPGROUP with 0 makes the child a group leader */
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&at, 0);
    spawn_report("setpgroup 0", argv, dir, NULL, &at, (char *[]){"pgrp", NULL});
    posix_spawnattr_destroy(&at);
    spawn_report("no setpgroup", argv, dir, NULL, NULL, (char *[]){"pgrp", NULL});

    /* signal mask and dispositions */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    sigprocmask(SIG_BLOCK, &block, &old);
    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    spawn_report("inherited", argv, dir, NULL, NULL, (char *[]){"sig", NULL});

    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    sigset_t m, d;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGTERM);
    posix_spawnattr_setsigmask(&at, &m);
    sigemptyset(&d);
    sigaddset(&d, SIGUSR1);
    posix_spawnattr_setsigdefault(&at, &d);
    spawn_report("setsigmask+setsigdef", argv, dir, NULL, &at, (char *[]){"sig", NULL});
    posix_spawnattr_destroy(&at);
    sigprocmask(SIG_SETMASK, &old, NULL);
    signal(SIGUSR1, SIG_DFL);
    signal(SIGUSR2, SIG_DFL);

    /* POSIX_SPAWN_RESETIDS */
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_RESETIDS);
    spawn_report("resetids", argv, dir, NULL, &at, (char *[]){"ids", NULL});
    short flags = 0;
    posix_spawnattr_getflags(&at, &flags);
    printf("flags read back: %d\n", flags == POSIX_SPAWN_RESETIDS);
    posix_spawnattr_destroy(&at);

    /* an invalid flag */
    posix_spawnattr_init(&at);
    printf("setflags invalid: %s\n", errname(posix_spawnattr_setflags(&at, 0x4000)));
    posix_spawnattr_destroy(&at);
    return t_finish();
}
