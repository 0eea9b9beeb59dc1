/* A child keeps the credentials it was forked with when its parent exits first: a user's
 * daemon that forks and exits (pg_ctl start, a double fork) leaves a child of that user, not
 * of root. */
#include "common.h"
#include <grp.h>

#define USER 1234
#define GROUP 2345

int main(void)
{
    int report[2];
    OK("pipe", pipe(report));
    pid_t mid = fork();
    if (mid == 0) {
        gid_t groups[] = {GROUP};
        if (setgroups(1, groups) != 0 || setresgid(GROUP, GROUP, GROUP) != 0 ||
            setresuid(USER, USER, USER) != 0)
            _exit(2);
        if (fork() == 0) {
            /* the parent is gone before this child asks anything */
            struct timespec ts = {0, 300 * 1000 * 1000};
            nanosleep(&ts, NULL);
            char line[64];
            int n = snprintf(line, sizeof line, "%u %u %u\n", (unsigned)getuid(),
                             (unsigned)geteuid(), (unsigned)getgid());
            if (write(report[1], line, (size_t)n) != n)
                _exit(3);
            _exit(0);
        }
        _exit(0);
    }
    close(report[1]);
    int status;
    CHECK(waitpid(mid, &status, 0) == mid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char buf[64] = {0};
    ssize_t n = read(report[0], buf, sizeof buf - 1); /* EOF once the orphan has exited */
    CHECK(n > 0);
    printf("orphan: uid euid gid %s", n > 0 ? buf : "?\n");
    unsigned uid = 0, euid = 0, gid = 0;
    CHECK(sscanf(buf, "%u %u %u", &uid, &euid, &gid) == 3);
    CHECK(uid == USER && euid == USER && gid == GROUP);
    if (t_failures)
        return 1;
    printf("PASS\n");
    return 0;
}
