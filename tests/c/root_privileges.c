/* What root may do to its own credentials and priorities: setgroups/getgroups (sorted, with
 * duplicates, inherited by fork, shown in /proc/self/status), initgroups, and raising
 * priorities (setpriority to a lower nice value, nice(-5)) of itself, a child and its process
 * group. Run as root. Values are printed relative to the starting nice value. */
#include "common.h"
#include <grp.h>
#include <sys/resource.h>

static void show_groups(const char *label)
{
    gid_t g[16];
    int n = getgroups(16, g);
    printf("%s:", label);
    if (n < 0)
        printf(" %s", errname(errno));
    for (int i = 0; i < n; i++)
        printf(" %u", (unsigned)g[i]);
    printf("\n");
}

static void status_groups(void)
{
    const char *s = read_file("/proc/self/status");
    const char *at = s ? strstr(s, "\nGroups:") : NULL;
    if (!at) {
        printf("status: no Groups line\n");
        return;
    }
    at += 8;
    const char *end = strchr(at, '\n');
    printf("status Groups:%.*s|\n", (int)(end - at), at);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    setvbuf(stdout, NULL, _IONBF, 0);
    gid_t set[] = {5, 3000000000u, 3, 5};
    OK("setgroups", setgroups(4, set));
    printf("count: %d\n", getgroups(0, NULL));
    gid_t small[2];
    ERR("getgroups too small", getgroups(2, small), EINVAL);
    volatile int negative = -1;
    ERR("getgroups negative", getgroups(negative, small), EINVAL);
    show_groups("groups");
    status_groups();
    ERR("setgroups too many", setgroups(65537, set), EINVAL);
    show_groups("unchanged");

    pid_t c = fork();
    if (c == 0) {
        show_groups("child inherits");
        gid_t one[] = {42};
        setgroups(1, one);
        show_groups("child sets");
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    show_groups("parent keeps");
    OK("initgroups", initgroups("occlum-no-such-user", 1234));
    show_groups("after initgroups");
    OK("setgroups empty", setgroups(0, NULL));
    show_groups("empty");
    status_groups();

    /* priorities, relative to where we started */
    CHECK(setpgid(0, 0) == 0); /* a group of our own for PRIO_PGRP */
    errno = 0;
    int base = getpriority(PRIO_PROCESS, 0);
    CHECK(errno == 0);
    errno = 0;
    int r = nice(-5);
    printf("nice(-5): %s, now base%+d\n", errno ? errname(errno) : "ok", r - base);
    OK("setpriority lower nice", setpriority(PRIO_PROCESS, 0, base - 7));
    printf("now base%+d\n", getpriority(PRIO_PROCESS, 0) - base);
    OK("setpriority higher nice", setpriority(PRIO_PROCESS, 0, base - 2));
    printf("now base%+d\n", getpriority(PRIO_PROCESS, 0) - base);
    OK("setpriority below -20", setpriority(PRIO_PROCESS, 0, -30));
    printf("clamped: %d\n", getpriority(PRIO_PROCESS, 0));
    OK("back to base", setpriority(PRIO_PROCESS, 0, base));

    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    c = fork();
    if (c == 0) {
        char b;
        read(pipefd[0], &b, 1);
        printf("child sees base%+d\n", getpriority(PRIO_PROCESS, 0) - base);
        _exit(0);
    }
    OK("setpriority of a child", setpriority(PRIO_PROCESS, c, base - 4));
    printf("child is base%+d\n", getpriority(PRIO_PROCESS, c) - base);
    OK("setpriority of the group", setpriority(PRIO_PGRP, 0, base - 6));
    printf("self is base%+d\n", getpriority(PRIO_PROCESS, 0) - base);
    CHECK(write(pipefd[1], "x", 1) == 1);
    waitpid(c, &st, 0);
    ERR("bad which", setpriority(7, 0, 0), EINVAL);
    return t_finish();
}
