/* vfork: the parent is suspended until the child execs or exits; shared memory until then. */
#include "common.h"
#include <sys/wait.h>

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[2], "--child") == 0) {
        printf("exec'd after vfork\n");
        return 4;
    }
    const char *dir = scratch_enter(argc, argv);
    fflush(stdout);
    volatile int marker = 0;
    pid_t c = vfork();
    if (c == 0) {
        marker = 1; /* visible to the parent: memory is shared until _exit */
        _exit(2);
    }
    int status;
    CHECK(waitpid(c, &status, 0) == c);
    printf("vfork child exit: %d, parent saw child's write: %d\n", WEXITSTATUS(status), marker);

    c = vfork();
    if (c == 0) {
        char *args[] = {self_exe(), (char *)dir, "--child", NULL};
        execv(self_exe(), args);
        _exit(127);
    }
    CHECK(waitpid(c, &status, 0) == c);
    printf("vfork+exec exit: %d\n", WEXITSTATUS(status));

    c = vfork();
    if (c == 0) {
        execl("/no/such/file", "x", NULL);
        _exit(126);
    }
    CHECK(waitpid(c, &status, 0) == c);
    printf("vfork+failed exec exit: %d\n", WEXITSTATUS(status));
    return t_finish();
}
