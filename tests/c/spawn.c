/* posix_spawn of itself: arguments, file actions (dup2, open, close), exit status. */
#include "common.h"
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[2], "--child") == 0) {
        printf("spawned child args:");
        for (int i = 3; i < argc; i++)
            printf(" %s", argv[i]);
        printf("\n");
        char buf[32] = {0};
        ssize_t n = read(0, buf, sizeof buf - 1);
        printf("stdin from file action: %s\n", n > 0 ? buf : "(none)");
        fflush(stdout);
        return 3;
    }
    const char *dir = scratch_enter(argc, argv);
    CHECK(write_file("input", "hello-stdin") == 0);
    fflush(stdout);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "input", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    char *args[] = {self_exe(), (char *)dir, "--child", "a", "b", NULL};
    int r = posix_spawn(&pid, self_exe(), &fa, NULL, args, environ);
    printf("posix_spawn: %s\n", errname(r));
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    printf("exit code: %d\n", WEXITSTATUS(status));
    printf("child output:\n%s", read_file("out"));
    posix_spawn_file_actions_destroy(&fa);

    r = posix_spawn(&pid, "/no/such/program", NULL, NULL, args, environ);
    printf("spawn missing: %s\n", errname(r));

    /* many spawns in a row */
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        char *a2[] = {self_exe(), (char *)dir, "--child", NULL};
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        if (posix_spawnp(&pid, self_exe(), &fa, NULL, a2, environ) == 0 && waitpid(pid, &status, 0) == pid &&
            WEXITSTATUS(status) == 3)
            ok++;
        posix_spawn_file_actions_destroy(&fa);
    }
    printf("20 spawns ok: %d\n", ok);
    return t_finish();
}
