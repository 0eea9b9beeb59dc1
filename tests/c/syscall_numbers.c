/* System call numbers the LibOS knows nothing of, and the loader stub's private number, give
 * ENOSYS to an ordinary program, as on Linux; 335 (uretprobe on Linux 6.11 and later, which
 * seccomp filters never see) does what the host kernel does with it. */
#include "common.h"
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static void in_child(const char *label, long nr, long a1, long a2)
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        errno = 0;
        long r = syscall(nr, a1, a2, 0, 0, 0, 0);
        printf("%s: %s\n", label, r < 0 ? errname(errno) : "returned");
        fflush(stdout);
        _exit(0);
    }
    int status;
    CHECK(waitpid(c, &status, 0) == c);
    if (WIFSIGNALED(status))
        printf("%s: killed by signal %d\n", label, WTERMSIG(status));
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    long sp = 0;
    __asm__ volatile("mov %%rsp, %0" : "=r"(sp));
    /* the stub's number, with and without the address of the stub's buffer */
    ERR("syscall 0x1fff", syscall(0x1FFF, 0, 0), ENOSYS);
    ERR("syscall 0x1fff (stub buffer)", syscall(0x1FFF, 0x6F0000001000L, sp), ENOSYS);
    ERR("syscall 0x1fff again", syscall(0x1FFF, 0x6F0000001000L, sp), ENOSYS);
    ERR("syscall 400 (unassigned)", syscall(400, 0, 0), ENOSYS);
    ERR("syscall 100000", syscall(100000, 0, 0), ENOSYS);
    in_child("syscall 335", 335, 0, 0);
    printf("still alive after them: yes\n");
    return t_finish();
}
