/* Calls a syscall number no kernel has, twice, then one the LibOS refuses with ENOSYS (and a
 * reason): ENOSYS each time. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(void)
{
    for (int i = 0; i < 2; i++) {
        long rc = syscall(1000);
        printf("syscall 1000: %ld %s\n", rc, errno == ENOSYS ? "ENOSYS" : "other");
    }
    long rc = syscall(SYS_inotify_init1, 0);
    printf("inotify_init1: %ld %s\n", rc, errno == ENOSYS ? "ENOSYS" : "other");
    return 0;
}
