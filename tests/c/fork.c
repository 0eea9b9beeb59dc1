/* fork + wait: exit statuses, signals, copy-on-write memory, wait for any child, ECHILD, orphans. */
#include "common.h"
#include <signal.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    int status;
    static int shared_value = 1;
    pid_t c = fork();
    if (c == 0) {
        shared_value = 2;
        _exit(7);
    }
    CHECK(c > 0);
    CHECK(waitpid(c, &status, 0) == c);
    printf("child exit: exited=%d code=%d\n", WIFEXITED(status), WEXITSTATUS(status));
    printf("parent memory unchanged: %d\n", shared_value);

    c = fork();
    if (c == 0) {
        pause();
        _exit(0);
    }
    CHECK(kill(c, SIGKILL) == 0);
    CHECK(waitpid(c, &status, 0) == c);
    printf("killed child: signaled=%d sig=%d\n", WIFSIGNALED(status), WTERMSIG(status));

    c = fork();
    if (c == 0) {
        *(volatile int *)0 = 1;
        _exit(0);
    }
    CHECK(waitpid(c, &status, 0) == c);
    printf("crashing child: signaled=%d sig=%d\n", WIFSIGNALED(status), WTERMSIG(status));

    /* several children, reaped with wait() in any order */
    int sum = 0;
    for (int i = 1; i <= 5; i++)
        if (fork() == 0)
            _exit(i);
    for (int i = 0; i < 5; i++) {
        CHECK(wait(&status) > 0);
        sum += WEXITSTATUS(status);
    }
    printf("sum of 5 exit codes: %d\n", sum);
    ERR("wait with no children", wait(&status), ECHILD);
    ERR("waitpid WNOHANG no children", waitpid(-1, &status, WNOHANG), ECHILD);

    c = fork();
    if (c == 0) {
        usleep(100000);
        _exit(3);
    }
    printf("WNOHANG while running: %d\n", waitpid(c, &status, WNOHANG));
    CHECK(waitpid(c, &status, 0) == c);

    /* parent/child pid relationship, and file descriptors shared across fork */
    int fd = open("f", O_RDWR | O_CREAT, 0644);
    pid_t me = getpid();
    c = fork();
    if (c == 0) {
        if (getppid() != me)
            _exit(1);
        write(fd, "child ", 6);
        _exit(0);
    }
    CHECK(waitpid(c, &status, 0) == c);
    printf("child saw parent pid: %d\n", WEXITSTATUS(status) == 0);
    CHECK(write(fd, "parent", 6) == 6);
    close(fd);
    printf("shared offset: %s\n", read_file("f"));

    /* a grandchild orphaned by its parent is reaped by init; we only observe it finishes */
    int p[2];
    CHECK(pipe(p) == 0);
    c = fork();
    if (c == 0) {
        if (fork() == 0) {
            close(p[0]);
            usleep(50000);
            write(p[1], "g", 1);
            _exit(0);
        }
        _exit(0);
    }
    close(p[1]);
    CHECK(waitpid(c, &status, 0) == c);
    char b = 0;
    CHECK(read(p[0], &b, 1) == 1);
    printf("orphan wrote: %c\n", b);
    close(p[0]);

    siginfo_t si;
    c = fork();
    if (c == 0)
        _exit(9);
    OK("waitid", waitid(P_PID, c, &si, WEXITED));
    printf("waitid: code=%d status=%d pid-match=%d\n", si.si_code, si.si_status, si.si_pid == c);
    return t_finish();
}
