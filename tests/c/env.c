/* Environment: getenv/setenv/unsetenv/putenv/clearenv on an environment given by execve. */
#include "common.h"
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[2], "--child") == 0) {
        printf("A=%s\n", getenv("A") ? getenv("A") : "(unset)");
        printf("EMPTY=[%s]\n", getenv("EMPTY") ? getenv("EMPTY") : "(unset)");
        printf("WITH_EQ=%s\n", getenv("WITH_EQ") ? getenv("WITH_EQ") : "(unset)");
        printf("MISSING=%s\n", getenv("MISSING") ? getenv("MISSING") : "(unset)");
        int n = 0;
        for (char **e = environ; *e; e++)
            printf("environ[%d]=%s\n", n++, *e);
        CHECK(setenv("NEW", "v", 0) == 0);
        CHECK(setenv("A", "changed", 0) == 0);
        printf("setenv no-overwrite keeps A=%s\n", getenv("A"));
        CHECK(setenv("A", "changed", 1) == 0);
        printf("setenv overwrite A=%s\n", getenv("A"));
        CHECK(unsetenv("A") == 0);
        printf("after unsetenv A=%s\n", getenv("A") ? getenv("A") : "(unset)");
        ERR("setenv bad name", setenv("BAD=NAME", "x", 1), EINVAL);
        static char pe[] = "PUT=env";
        CHECK(putenv(pe) == 0);
        printf("putenv PUT=%s\n", getenv("PUT"));
        CHECK(clearenv() == 0);
        printf("after clearenv NEW=%s\n", getenv("NEW") ? getenv("NEW") : "(unset)");
        fflush(stdout);
        return t_failures ? 1 : 0;
    }
    const char *dir = scratch_enter(argc, argv);
    printf("inherited environment is readable: %d\n", environ != NULL);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        char *args[] = {self_exe(), (char *)dir, "--child", NULL};
        char *env[] = {"A=1", "EMPTY=", "WITH_EQ=x=y", "Z=last", NULL};
        execve(self_exe(), args, env);
        _exit(127);
    }
    int status;
    CHECK(waitpid(c, &status, 0) == c);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    printf("child exit: %d\n", WEXITSTATUS(status));
    return t_finish();
}
