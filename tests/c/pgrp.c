/* Process groups and sessions: setpgid/getpgid/getpgrp, setsid/getsid, their errors, and
 * signals sent to a whole group with kill(-pgrp) and killpg. */
#include "common.h"
#include <signal.h>

/* Run fn in a child; return its exit code (what it reports). */
static int in_child(int (*fn)(void))
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0)
        _exit(fn());
    return wait_child(c);
}

/* A fresh child is not a group leader: setsid works and makes it leader of both. */
static int setsid_fresh(void)
{
    pid_t me = getpid();
    if (getpgrp() == me)
        return 10;
    pid_t s = setsid();
    if (s != me)
        return 11;
    if (getsid(0) != me || getpgrp() != me || getpgid(0) != me)
        return 12;
    /* a session leader cannot setsid again nor change its group */
    if (setsid() != -1 || errno != EPERM)
        return 13;
    if (setpgid(0, 0) != -1 || errno != EPERM)
        return 14;
    return 0;
}

/* A group leader cannot start a session. */
static int setsid_leader(void)
{
    if (setpgid(0, 0) != 0)
        return 20;
    if (setsid() != -1)
        return 21;
    return errno == EPERM ? 0 : 22;
}

/* Moving between groups of the same session. */
static int move_groups(void)
{
    pid_t me = getpid(), orig = getpgrp();
    if (setpgid(0, 0) != 0 || getpgrp() != me)
        return 30;
    if (setpgid(0, orig) != 0 || getpgrp() != orig) /* back to the parent's group */
        return 31;
    if (setpgid(me, me) != 0 || getpgid(me) != me)
        return 32;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[2], "--exec-child") == 0) {
        /* exec'd child: tell the parent we are past exec, then wait to be killed */
        write(3, "e", 1);
        pause();
        return 0;
    }
    scratch_enter(argc, argv);
    pid_t me = getpid();
    printf("getpgrp == getpgid(0): %d\n", getpgrp() == getpgid(0));
    printf("getpgid(self) == getpgid(0): %d\n", getpgid(me) == getpgid(0));
    printf("getsid(0) == getsid(self): %d\n", getsid(0) == getsid(me));

    printf("setsid in a fresh child: %d\n", in_child(setsid_fresh));
    printf("setsid in a group leader: %d\n", in_child(setsid_leader));
    printf("moving between groups: %d\n", in_child(move_groups));

    /* errors */
    ERR("setpgid negative pgid", setpgid(0, -1), EINVAL);
    ERR("getpgid of no process", getpgid(0x3ffffff0), ESRCH);
    ERR("getsid of no process", getsid(0x3ffffff0), ESRCH);
    ERR("setpgid of no process", setpgid(0x3ffffff0, 0), ESRCH);

    int p[2];
    CHECK(pipe(p) == 0);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        char b;
        read(p[0], &b, 1);
        _exit(0);
    }
    ERR("setpgid child to a group of another session", setpgid(c, 0x3ffffff0), EPERM);
    OK("parent sets child's group", setpgid(c, c));
    printf("child leads its group: %d\n", getpgid(c) == c);
    OK("parent puts child back", setpgid(c, getpgrp()));
    printf("child back in our group: %d\n", getpgid(c) == getpgrp());
    CHECK(write(p[1], "x", 1) == 1);
    CHECK(wait_child(c) == 0);

    /* a child in a session of its own is out of reach of setpgid */
    int q[2];
    CHECK(pipe(q) == 0);
    c = fork();
    if (c == 0) {
        setsid();
        write(q[1], "s", 1);
        char b;
        read(p[0], &b, 1);
        _exit(0);
    }
    char b;
    CHECK(read(q[0], &b, 1) == 1);
    printf("child's session is its own: %d\n", getsid(c) == c && getsid(c) != getsid(0));
    ERR("setpgid of a child in another session", setpgid(c, c), EPERM);
    CHECK(write(p[1], "x", 1) == 1);
    CHECK(wait_child(c) == 0);

    /* after the child's execve the parent may no longer change its group */
    c = fork();
    if (c == 0) {
        dup2(q[1], 3);
        execl(self_exe(), self_exe(), "", "--exec-child", (char *)NULL);
        _exit(127);
    }
    CHECK(read(q[0], &b, 1) == 1);
    ERR("setpgid after the child's exec", setpgid(c, c), EACCES);
    kill(c, SIGKILL);
    printf("exec'd child: %d\n", wait_child(c));

    /* kill(-pgrp) and killpg reach every member of a group, and only them */
    pid_t lead = fork();
    if (lead == 0) {
        setpgid(0, 0);
        pause();
        _exit(0);
    }
    setpgid(lead, lead);
    pid_t member = fork();
    if (member == 0) {
        setpgid(0, lead);
        pause();
        _exit(0);
    }
    setpgid(member, lead);
    pid_t outsider = fork();
    if (outsider == 0) {
        pause();
        _exit(0);
    }
    OK("kill(-pgrp, 0)", kill(-lead, 0));
    OK("kill(-pgrp, SIGTERM)", kill(-lead, SIGTERM));
    printf("leader: %d, member: %d\n", wait_child(lead), wait_child(member));
    ERR("kill of an empty group", kill(-lead, 0), ESRCH);
    ERR("killpg of an empty group", killpg(lead, SIGTERM), ESRCH);
    OK("outsider untouched", kill(outsider, 0));

    pid_t g1 = fork();
    if (g1 == 0) {
        setpgid(0, 0);
        pause();
        _exit(0);
    }
    setpgid(g1, g1);
    OK("killpg", killpg(g1, SIGUSR1));
    printf("killpg'd: %d\n", wait_child(g1));
    kill(outsider, SIGKILL);
    printf("outsider: %d\n", wait_child(outsider));
    ERR("kill of a group that never existed", kill(-0x3ffffff0, 0), ESRCH);
    return t_finish();
}
