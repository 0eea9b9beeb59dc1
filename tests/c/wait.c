/* wait4 and waitid: WNOHANG, stopped and continued children (WUNTRACED/WSTOPPED,
 * WCONTINUED), WNOWAIT, P_PID/P_PGID/P_ALL, rusage, and the errors. */
#include "common.h"
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>

static const char *code_name(int code)
{
    switch (code) {
    case CLD_EXITED: return "CLD_EXITED";
    case CLD_KILLED: return "CLD_KILLED";
    case CLD_DUMPED: return "CLD_DUMPED";
    case CLD_STOPPED: return "CLD_STOPPED";
    case CLD_CONTINUED: return "CLD_CONTINUED";
    default: return "?";
    }
}

static void describe(const char *label, int status)
{
    if (WIFEXITED(status))
        printf("%s: exited %d\n", label, WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        printf("%s: signaled %d\n", label, WTERMSIG(status));
    else if (WIFSTOPPED(status))
        printf("%s: stopped %d\n", label, WSTOPSIG(status));
    else if (WIFCONTINUED(status))
        printf("%s: continued\n", label);
    else
        printf("%s: status %#x\n", label, status);
}

/* A child that stops itself; once continued it exits 6 after a byte arrives on fd (so its
 * continued state is seen before its exit replaces it). */
static pid_t self_stopper(int fd)
{
    pid_t c = fork();
    if (c == 0) {
        raise(SIGSTOP);
        char b;
        read(fd, &b, 1);
        _exit(6);
    }
    return c;
}

/* A child that waits for a byte on fd, then exits with code. */
static pid_t waiter(int fd, int code)
{
    pid_t c = fork();
    if (c == 0) {
        char b;
        read(fd, &b, 1);
        _exit(code);
    }
    return c;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    int status;
    int p[2];
    CHECK(pipe(p) == 0);

    /* WNOHANG on a running child, then its exit */
    pid_t c = waiter(p[0], 2);
    printf("waitpid WNOHANG running: %d\n", waitpid(c, &status, WNOHANG));
    siginfo_t si;
    memset(&si, 0xff, sizeof si);
    OK("waitid WNOHANG running", waitid(P_PID, c, &si, WEXITED | WNOHANG));
    printf("si_pid zero: %d\n", si.si_pid == 0);
    CHECK(write(p[1], "x", 1) == 1);
    struct rusage ru;
    memset(&ru, 0xff, sizeof ru);
    CHECK(wait4(c, &status, 0, &ru) == c);
    describe("wait4", status);
    printf("rusage filled: %d\n", ru.ru_utime.tv_usec >= 0 && ru.ru_utime.tv_usec < 1000000 && ru.ru_maxrss >= 0);

    /* stopped and continued, seen by waitpid */
    c = self_stopper(p[0]);
    CHECK(waitpid(c, &status, WUNTRACED) == c);
    describe("WUNTRACED", status);
    printf("stopped again WUNTRACED|WNOHANG: %d\n", waitpid(c, &status, WUNTRACED | WNOHANG));
    CHECK(kill(c, SIGCONT) == 0);
    CHECK(waitpid(c, &status, WCONTINUED) == c);
    describe("WCONTINUED", status);
    CHECK(write(p[1], "x", 1) == 1);
    CHECK(waitpid(c, &status, 0) == c);
    describe("after continue", status);

    /* the same through waitid, with WNOWAIT leaving the state to be waited for again */
    c = self_stopper(p[0]);
    memset(&si, 0, sizeof si);
    OK("waitid WSTOPPED|WNOWAIT", waitid(P_PID, c, &si, WSTOPPED | WNOWAIT));
    printf("  code %s status %d pid-match %d\n", code_name(si.si_code), si.si_status, si.si_pid == c);
    memset(&si, 0, sizeof si);
    OK("waitid WSTOPPED", waitid(P_PID, c, &si, WSTOPPED));
    printf("  code %s status %d\n", code_name(si.si_code), si.si_status);
    memset(&si, 0, sizeof si);
    OK("waitid WSTOPPED|WNOHANG consumed", waitid(P_PID, c, &si, WSTOPPED | WNOHANG));
    printf("  si_pid zero: %d\n", si.si_pid == 0);
    CHECK(kill(c, SIGCONT) == 0);
    memset(&si, 0, sizeof si);
    OK("waitid WCONTINUED", waitid(P_PID, c, &si, WCONTINUED));
    printf("  code %s status %d\n", code_name(si.si_code), si.si_status);
    CHECK(write(p[1], "x", 1) == 1);
    memset(&si, 0, sizeof si);
    OK("waitid WEXITED|WNOWAIT", waitid(P_PID, c, &si, WEXITED | WNOWAIT));
    printf("  code %s status %d\n", code_name(si.si_code), si.si_status);
    memset(&si, 0, sizeof si);
    OK("waitid WEXITED", waitid(P_PID, c, &si, WEXITED));
    printf("  code %s status %d\n", code_name(si.si_code), si.si_status);
    ERR("waitid after reap", waitid(P_PID, c, &si, WEXITED), ECHILD);

    /* stopped by SIGTSTP from the parent, then killed. The kernel discards SIGTSTP in an
     * orphaned process group, which ours may be (it depends on who started us), so the child
     * gets a group of its own, whose parent (we) is in another group of the same session. */
    fflush(stdout);
    c = fork();
    if (c == 0) {
        setpgid(0, 0);
        char b;
        read(p[0], &b, 1);
        _exit(0);
    }
    setpgid(c, c);
    CHECK(kill(c, SIGTSTP) == 0);
    CHECK(waitpid(c, &status, WUNTRACED) == c);
    describe("SIGTSTP", status);
    CHECK(kill(c, SIGKILL) == 0);
    memset(&si, 0, sizeof si);
    OK("waitid killed", waitid(P_PID, c, &si, WEXITED));
    printf("  code %s status %d\n", code_name(si.si_code), si.si_status);

    /* P_PGID: two children in a group of their own */
    int q[2];
    CHECK(pipe(q) == 0);
    pid_t a = fork();
    if (a == 0) {
        setpgid(0, 0);
        char b;
        read(q[0], &b, 1);
        _exit(11);
    }
    setpgid(a, a);
    pid_t b = fork();
    if (b == 0) {
        setpgid(0, a);
        char x;
        read(q[0], &x, 1);
        _exit(12);
    }
    setpgid(b, a);
    pid_t outsider = waiter(q[0], 13);
    printf("group of b is a: %d\n", getpgid(b) == a);
    memset(&si, 0, sizeof si);
    OK("waitid P_PGID WNOHANG", waitid(P_PGID, a, &si, WEXITED | WNOHANG));
    printf("  si_pid zero: %d\n", si.si_pid == 0);
    CHECK(write(q[1], "xxx", 3) == 3);
    int sum = 0;
    for (int i = 0; i < 2; i++) {
        memset(&si, 0, sizeof si);
        if (waitid(P_PGID, a, &si, WEXITED) == 0 && (si.si_pid == a || si.si_pid == b))
            sum += si.si_status;
    }
    printf("P_PGID reaped the group: sum %d\n", sum);
    ERR("P_PGID group empty", waitid(P_PGID, a, &si, WEXITED), ECHILD);
    CHECK(waitpid(-getpgrp(), &status, 0) == outsider);
    describe("waitpid(-own group)", status);

    /* P_ALL and waitpid(-1) */
    c = waiter(p[0], 21);
    CHECK(write(p[1], "x", 1) == 1);
    memset(&si, 0, sizeof si);
    OK("waitid P_ALL", waitid(P_ALL, 0, &si, WEXITED));
    printf("  status %d pid-match %d\n", si.si_status, si.si_pid == c);

    /* errors */
    ERR("waitid no options", waitid(P_PID, getpid(), &si, 0), EINVAL);
    ERR("waitid bad idtype", waitid((idtype_t)42, 0, &si, WEXITED), EINVAL);
    ERR("waitpid bad options", waitpid(-1, &status, 0x40000), EINVAL);
    ERR("waitpid not a child", waitpid(1, &status, 0), ECHILD);
    ERR("wait4 no children", wait4(-1, &status, WNOHANG, NULL), ECHILD);
    ERR("waitid no children", waitid(P_ALL, 0, &si, WEXITED), ECHILD);
    return t_finish();
}
