/* /proc/PID/status signal lines (SigQ, SigPnd, ShdPnd, SigBlk, SigIgn, SigCgt) show the
 * process's own signal state, for itself and for a child. */
#include "common.h"
#include <signal.h>

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
    kill(c, SIGKILL);
    waitpid(c, NULL, 0);
    return t_finish();
}
