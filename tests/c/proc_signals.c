/* /proc/PID/status signal lines (SigQ, SigPnd, ShdPnd, SigBlk, SigIgn, SigCgt) show the
 * process's own signal state, for itself and for a child; an open /proc/PID directory is a
 * pidfd for pidfd_send_signal, and still a directory. */
#include "common.h"
#include <signal.h>
#include <sys/syscall.h>

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

static unsigned long long field(const char *path, const char *name)
{
    const char *st = read_file(path);
    if (!st) {
        printf("read %s: %s\n", path, errname(errno));
        t_failures++;
        return 0;
    }
    const char *at = strstr(st, name);
    if (!at) {
        printf("%s: no %s line\n", path, name);
        t_failures++;
        return 0;
    }
    return strtoull(at + strlen(name) + 1, NULL, 16);
}

static const char *path_status(const char *dir)
{
    static char p[80];
    snprintf(p, sizeof p, "%s/status", dir);
    return p;
}

static unsigned long long bit(int sig) { return 1ULL << (sig - 1); }

static void on_usr2(int s) { (void)s; }

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGHUP);
    OK("block SIGUSR1 and SIGHUP", sigprocmask(SIG_BLOCK, &set, NULL));
    signal(SIGPIPE, SIG_IGN);
    signal(SIGUSR2, on_usr2);
    OK("raise SIGUSR1 (pending for the thread)", raise(SIGUSR1));
    OK("kill self SIGHUP (pending for the process)", kill(getpid(), SIGHUP));
    const char *me = "/proc/self/status";
    printf("SigPnd has SIGUSR1: %d\n", (field(me, "SigPnd:") & bit(SIGUSR1)) != 0);
    printf("SigPnd has SIGHUP: %d\n", (field(me, "SigPnd:") & bit(SIGHUP)) != 0);
    printf("ShdPnd has SIGHUP: %d\n", (field(me, "ShdPnd:") & bit(SIGHUP)) != 0);
    printf("ShdPnd has SIGUSR1: %d\n", (field(me, "ShdPnd:") & bit(SIGUSR1)) != 0);
    unsigned long long blk = field(me, "SigBlk:");
    printf("SigBlk: SIGUSR1 %d SIGHUP %d SIGUSR2 %d\n", (blk & bit(SIGUSR1)) != 0,
           (blk & bit(SIGHUP)) != 0, (blk & bit(SIGUSR2)) != 0);
    printf("SigIgn has SIGPIPE: %d, SIGUSR2: %d\n", (field(me, "SigIgn:") & bit(SIGPIPE)) != 0,
           (field(me, "SigIgn:") & bit(SIGUSR2)) != 0);
    printf("SigCgt has SIGUSR2: %d, SIGPIPE: %d\n", (field(me, "SigCgt:") & bit(SIGUSR2)) != 0,
           (field(me, "SigCgt:") & bit(SIGPIPE)) != 0);
    const char *st = read_file(me);
    const char *q = st ? strstr(st, "\nSigQ:\t") : NULL;
    int queued = -1, limit = -1;
    printf("SigQ is N/M: %d\n", q && sscanf(q, "\nSigQ:\t%d/%d", &queued, &limit) == 2 && queued >= 2 && limit > 0);
    /* the lines come in Linux's order */
    const char *a = st ? strstr(st, "SigQ:") : NULL, *b = st ? strstr(st, "SigCgt:") : NULL;
    printf("SigQ before SigCgt: %d\n", a && b && a < b);

    /* a child's state, seen by its parent */
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t c = fork();
    if (c == 0) {
        signal(SIGTERM, SIG_IGN);
        signal(SIGUSR2, SIG_DFL);
        close(p[0]);
        write(p[1], "r", 1);
        pause();
        _exit(0);
    }
    close(p[1]);
    char r;
    CHECK(read(p[0], &r, 1) == 1);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)c);
    printf("child SigIgn has SIGTERM: %d, SIGPIPE: %d\n", (field(path, "SigIgn:") & bit(SIGTERM)) != 0,
           (field(path, "SigIgn:") & bit(SIGPIPE)) != 0);
    printf("child SigBlk has SIGUSR1: %d\n", (field(path, "SigBlk:") & bit(SIGUSR1)) != 0);
    printf("child SigCgt has SIGUSR2: %d\n", (field(path, "SigCgt:") & bit(SIGUSR2)) != 0);
    /* /proc/<child> as a pidfd: SIGUSR1 is blocked there, SIGTERM ignored, SIGINT kills */
    snprintf(path, sizeof path, "/proc/%d", (int)c);
    int dfd = OK("open /proc/<child> O_DIRECTORY", open(path, O_RDONLY | O_DIRECTORY));
    OK("pidfd_send_signal SIGUSR1 (blocked)", syscall(SYS_pidfd_send_signal, dfd, SIGUSR1, NULL, 0));
    printf("child SigPnd or ShdPnd has SIGUSR1: %d\n",
           ((field(path_status(path), "SigPnd:") | field(path_status(path), "ShdPnd:")) & bit(SIGUSR1)) != 0);
    int sfd = openat(dfd, "status", O_RDONLY);
    printf("openat(dirfd, status): %s\n", sfd >= 0 ? "ok" : errname(errno));
    if (sfd >= 0)
        close(sfd);
    DIR *d = fdopendir(dup(dfd));
    int has_status = 0;
    for (struct dirent *de; d && (de = readdir(d)) != NULL;)
        has_status |= strcmp(de->d_name, "status") == 0;
    if (d)
        closedir(d);
    printf("readdir of the pidfd directory lists status: %d\n", has_status);
    struct stat sb;
    printf("fstat is a directory: %d\n", fstat(dfd, &sb) == 0 && S_ISDIR(sb.st_mode));
    char x;
    ERR("read of the directory", read(dfd, &x, 1), EISDIR);
    ERR("pidfd_send_signal with an unknown flag", syscall(SYS_pidfd_send_signal, dfd, SIGINT, NULL, 0x80), EINVAL);
    OK("pidfd_send_signal SIGINT", syscall(SYS_pidfd_send_signal, dfd, SIGINT, NULL, 0));
    int status = 0;
    CHECK(waitpid(c, &status, 0) == c);
    printf("child killed by SIGINT: %d\n", WIFSIGNALED(status) && WTERMSIG(status) == SIGINT);
    ERR("pidfd_send_signal after it was reaped", syscall(SYS_pidfd_send_signal, dfd, 0, NULL, 0), ESRCH);
    close(dfd);
    int tdir = open(".", O_RDONLY | O_DIRECTORY);
    ERR("pidfd_send_signal on another directory", syscall(SYS_pidfd_send_signal, tdir, 0, NULL, 0), EBADF);
    close(tdir);
    snprintf(path, sizeof path, "/proc/self/task/%d", (int)getpid());
    int task = open(path, O_RDONLY | O_DIRECTORY);
    CHECK(task >= 0);
    ERR("pidfd_send_signal on a task directory", syscall(SYS_pidfd_send_signal, task, 0, NULL, 0), EBADF);
    close(task);
    return t_finish();
}
