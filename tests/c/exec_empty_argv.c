/* execve with an empty or NULL argv: Linux 5.18 and later start the program with argc 1 and
 * argv[0] "" (never argc 0). */
#include "common.h"
#include <sys/syscall.h>
int main(int argc, char **argv) {
    if (argc == 1 && argv[0] && argv[0][0] == 0 && getenv("EMPTY_ARGV_CHILD")) {
        printf("child argc %d argv0 \"%s\" argv1 %s\n", argc, argv[0], argv[1] ? "set" : "NULL");
        return 0;
    }
    if (getenv("EMPTY_ARGV_CHILD")) { printf("child argc %d\n", argc); return 1; }
    scratch_enter(argc, argv);
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        char *av[] = {NULL};
        char *ev[] = {"EMPTY_ARGV_CHILD=1", NULL};
        execve(self_exe(), av, ev);
        printf("execve: %s\n", errname(errno));
        _exit(1);
    }
    printf("child: %d\n", wait_child(p));
    fflush(stdout);
    p = fork();
    if (p == 0) {
        char *ev[] = {"EMPTY_ARGV_CHILD=1", NULL};
        syscall(SYS_execve, self_exe(), NULL, ev);
        printf("execve: %s\n", errname(errno));
        _exit(1);
    }
    printf("child: %d\n", wait_child(p));
    return t_finish();
}
