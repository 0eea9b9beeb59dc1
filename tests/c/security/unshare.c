/* New namespaces (the classic first step of a container escape) are refused. */
#include "sec.h"
#include <sched.h>

static long u_user(void) { return unshare(CLONE_NEWUSER); }
static long u_mnt(void) { return unshare(CLONE_NEWNS); }
static long u_net(void) { return unshare(CLONE_NEWNET); }
static long u_pid(void) { return unshare(CLONE_NEWPID); }
static long u_user_mnt(void) { return unshare(CLONE_NEWUSER | CLONE_NEWNS); }
static long s_init_mnt(void)
{
    int fd = open("/proc/1/ns/mnt", O_RDONLY);
    if (fd < 0)
        return -1;
    return setns(fd, 0);
}
static int child_fn(void *arg) { (void)arg; return 0; }
static long clone_newuser(void)
{
    static char stack[16384];
    int pid = clone(child_fn, stack + sizeof stack, CLONE_NEWUSER | SIGCHLD, NULL);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    return pid;
}

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    PROBE("unshare(NEWUSER)", u_user);
    PROBE("unshare(NEWNS)", u_mnt);
    PROBE("unshare(NEWNET)", u_net);
    PROBE("unshare(NEWPID)", u_pid);
    PROBE("unshare(NEWUSER|NEWNS)", u_user_mnt);
    PROBE("setns(/proc/1/ns/mnt)", s_init_mnt);
    PROBE("clone(NEWUSER)", clone_newuser);
    return sec_finish();
}
