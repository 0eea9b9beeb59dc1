/* For `occlum gdb` tests (tests/integration/test_gdb.py): a signal the program handles, and a
 * child whose function a debugger following the fork stops in. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_usr1(int sig) {
    (void)sig;
    puts("got SIGUSR1");
}

static int child_work(int n) {
    return n * 2 + 1; /* CHILD LINE */
}

int main(void) {
    signal(SIGUSR1, on_usr1);
    raise(SIGUSR1);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0)
        exit(child_work(2));
    int status = 0;
    waitpid(child, &status, 0);
    /* on stderr: GDB reports the child's exit on stdout at the same moment, and two writers of
     * one pipe may interleave */
    fprintf(stderr, "child exited with %d\n", WEXITSTATUS(status));
    return 0;
}
