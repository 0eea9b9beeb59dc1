/* What a child inherits at fork and keeps across exec: cwd, umask, root (chroot), fds. */
#include "common.h"
#include <sys/stat.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[2], "--after-exec") == 0) {
        char cwd[PATH_MAX];
        mode_t m = umask(0);
        const char *base = strrchr(getcwd(cwd, sizeof cwd), '/');
        printf("after exec: cwd ends %s umask %03o\n", base ? base : cwd, (unsigned)m);
        return 0;
    }
    scratch_enter(argc, argv);
    mkdir_p("a/b");
    CHECK(write_file("a/b/inside", "inside\n") == 0);
    umask(027);
    CHECK(chdir("a") == 0);
    fflush(stdout);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        char cwd[PATH_MAX];
        const char *base = strrchr(getcwd(cwd, sizeof cwd), '/');
        printf("child: cwd ends %s umask %03o\n", base, (unsigned)umask(0));
        CHECK(chdir("b") == 0);
        fflush(stdout);
        _exit(0);
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c);
    char cwd[PATH_MAX];
    printf("parent cwd unchanged: ends %s\n", strrchr(getcwd(cwd, sizeof cwd), '/'));

    /* the parent changes cwd right after fork: the child must keep the old one */
    fflush(stdout);
    c = fork();
    if (c == 0) {
        usleep(100000);
        printf("late child: cwd ends %s\n", strrchr(getcwd(cwd, sizeof cwd), '/'));
        fflush(stdout);
        _exit(0);
    }
    CHECK(chdir("b") == 0);
    CHECK(waitpid(c, &st, 0) == c);

    fflush(stdout);

    c = fork();
    if (c == 0) {
        char *args[] = {self_exe(), (char *)".", "--after-exec", NULL};
        execv(self_exe(), args);
        _exit(127);
    }
    CHECK(waitpid(c, &st, 0) == c);

    fflush(stdout);

    c = fork();
    if (c == 0) {
        CHECK(chroot(".") == 0);
        CHECK(chdir("/") == 0);
        printf("chrooted: getcwd %s, inside readable %d, dotdot stays %d\n", getcwd(cwd, sizeof cwd),
               access("/inside", R_OK) == 0, access("/../inside", R_OK) == 0);
        fflush(stdout);
        _exit(0);
    }
    CHECK(waitpid(c, &st, 0) == c);
    return t_finish();
}
