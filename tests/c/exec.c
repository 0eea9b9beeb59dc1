/* execve of itself with arguments and an environment; cloexec descriptors; exec errors. */
#include "common.h"
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[2], "--child") == 0) {
        printf("child argc=%d", argc);
        for (int i = 3; i < argc; i++)
            printf(" [%s]", argv[i]);
        printf("\nchild env EXEC_TEST=%s\n", getenv("EXEC_TEST") ? getenv("EXEC_TEST") : "(unset)");
        int n = 0;
        for (char **e = environ; *e; e++)
            n++;
        printf("child env count=%d\n", n);
        printf("cloexec fd 40 closed: %d, plain fd 41 open: %d\n", fcntl(40, F_GETFD) < 0,
               fcntl(41, F_GETFD) >= 0);
        return 5;
    }
    const char *dir = scratch_enter(argc, argv);
    fflush(stdout);
    int fd = open(".", O_RDONLY | O_DIRECTORY);
    dup3(fd, 40, O_CLOEXEC);
    dup2(fd, 41);
    close(fd);
    pid_t c = fork();
    if (c == 0) {
        char *args[] = {self_exe(), (char *)dir, "--child", "one", "two words", "", NULL};
        char *env[] = {"EXEC_TEST=yes", "OTHER=1", NULL};
        execve(self_exe(), args, env);
        printf("execve failed: %s\n", errname(errno));
        _exit(127);
    }
    int status;
    CHECK(waitpid(c, &status, 0) == c);
    printf("child exit code: %d\n", WEXITSTATUS(status));

    ERR("execve missing", execve("/no/such/program", argv, environ), ENOENT);
    CHECK(write_file("notelf", "just text, no shebang\n") == 0);
    CHECK(chmod("notelf", 0755) == 0);
    ERR("execve non-ELF", execve("notelf", argv, environ), ENOEXEC);
    CHECK(write_file("noexec", "\x7f" "ELF") == 0);
    CHECK(chmod("noexec", 0644) == 0);
    ERR("execve without x bit", execve("noexec", argv, environ), EACCES);
    CHECK(mkdir("d", 0755) == 0);
    ERR("execve directory", execve("d", argv, environ), EACCES);
    /* execvp searches PATH */
    c = fork();
    if (c == 0) {
        char *a[] = {"definitely-not-a-program-xyz", NULL};
        execvp(a[0], a);
        _exit(errno == ENOENT ? 0 : 1);
    }
    CHECK(waitpid(c, &status, 0) == c);
    printf("execvp unknown gives ENOENT: %d\n", WEXITSTATUS(status) == 0);
    return t_finish();
}
