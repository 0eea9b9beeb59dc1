/* #! scripts (with an optional argument), fexecve, and an interpreter that is itself a script. */
#include "common.h"
#include <sys/wait.h>

extern char **environ;

static int run(char *const args[], int use_fexecve)
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        if (use_fexecve) {
            int fd = open(args[0], O_RDONLY); /* not O_CLOEXEC: a script reads it by name */
            fexecve(fd, args, environ);
        } else {
            execve(args[0], args, environ);
        }
        printf("exec failed: %s\n", errname(errno));
        _exit(127);
    }
    int status;
    waitpid(c, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
    if (getenv("SHEBANG_CHILD")) {
        /* argv: interpreter [optional-arg] script [args...] */
        printf("interpreter got argc=%d", argc);
        for (int i = 1; i < argc; i++) {
            const char *slash = strrchr(argv[i], '/');
            printf(" [%s]", slash ? slash + 1 : argv[i]);
        }
        printf("\n");
        return 7;
    }
    scratch_enter(argc, argv);
    setenv("SHEBANG_CHILD", "1", 1);
    char line[PATH_MAX + 64];
    snprintf(line, sizeof line, "#!%s --interp-with-arg\necho not reached\n", self_exe());
    CHECK(write_file("script", line) == 0);
    CHECK(chmod("script", 0755) == 0);
    snprintf(line, sizeof line, "#!  %s   \n", self_exe());
    CHECK(write_file("bare", line) == 0);
    CHECK(chmod("bare", 0755) == 0);
    CHECK(write_file("nested", "#!script\n") == 0);
    CHECK(chmod("nested", 0755) == 0);

    char *a1[] = {"script", "one", "two", NULL};
    printf("script exit: %d\n", run(a1, 0));
    char *a2[] = {"bare", "--interp-bare", NULL};
    printf("bare script exit: %d\n", run(a2, 0));
    char *a3[] = {"script", "via-fexecve", NULL};
    printf("fexecve script exit: %d\n", run(a3, 1));
    char *a4[] = {"nested", "x", NULL};
    printf("script as interpreter exit: %d\n", run(a4, 0));
    CHECK(write_file("empty", "#!\n") == 0);
    CHECK(chmod("empty", 0755) == 0);
    ERR("empty #! line", execve("empty", a1, environ), ENOEXEC);
    CHECK(write_file("missing", "#!/no/such/interpreter\n") == 0);
    CHECK(chmod("missing", 0755) == 0);
    ERR("missing interpreter", execve("missing", a1, environ), ENOENT);
    return t_finish();
}
