/* Exit statuses seen by wait4/waitid: codes, signals, exit_group from a thread, orphans. */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

static void *spin(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static void *quit_all(void *arg)
{
    (void)arg;
    exit(42); /* exit_group: the other threads die too */
    return NULL;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    fflush(stdout);
    int codes[] = {0, 1, 77, 255};
    for (int i = 0; i < 4; i++) {
        fflush(stdout);
        pid_t c = fork();
        if (c == 0)
            _exit(codes[i]);
        int st;
        struct rusage ru;
        CHECK(wait4(c, &st, 0, &ru) == c);
        printf("exit %d -> exited %d code %d\n", codes[i], WIFEXITED(st), WEXITSTATUS(st));
    }
    int sigs[] = {SIGTERM, SIGKILL, SIGSEGV, SIGABRT};
    for (int i = 0; i < 4; i++) {
        fflush(stdout);
        pid_t c = fork();
        if (c == 0) {
            signal(SIGSEGV, SIG_DFL);
            raise(sigs[i]);
            _exit(0);
        }
        int st;
        CHECK(waitpid(c, &st, 0) == c);
        printf("signal %s -> signaled %d sig %s\n", strsignal(sigs[i]), WIFSIGNALED(st),
               strsignal(WTERMSIG(st)));
    }
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        pthread_t a, b;
        pthread_create(&a, NULL, spin, NULL);
        pthread_create(&b, NULL, spin, NULL);
        pthread_create(&a, NULL, quit_all, NULL);
        for (;;)
            pause();
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c);
    printf("exit_group from a thread -> code %d\n", WEXITSTATUS(st));

    fflush(stdout);

    c = fork();
    if (c == 0) {
        _exit(3);
    }
    siginfo_t si;
    memset(&si, 0, sizeof si);
    CHECK(waitid(P_PID, c, &si, WEXITED) == 0);
    printf("waitid: code %s status %d pid match %d\n", si.si_code == CLD_EXITED ? "CLD_EXITED" : "?",
           si.si_status, si.si_pid == c);
    ERR("wait with no children", wait(NULL), ECHILD);
    printf("WNOHANG with none: %s\n", waitpid(-1, NULL, WNOHANG) < 0 ? errname(errno) : "0");
    return t_finish();
}
