/* Makes calls the LibOS serves only in part (getxattr: no ACLs; /bin has no user.comment)
 * or refuses (ptrace, unshare), each once, and says what each returned. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/xattr.h>

int main(void)
{
    char value[64];
    long rc = getxattr("/bin", "user.comment", value, sizeof value);
    printf("getxattr: %ld %s\n", rc, rc < 0 ? strerror(errno) : "");
    rc = ptrace(PTRACE_TRACEME, 0, NULL, NULL);
    printf("ptrace: %ld %s\n", rc, rc < 0 ? strerror(errno) : "");
    rc = unshare(CLONE_NEWNS);
    printf("unshare: %ld %s\n", rc, rc < 0 ? strerror(errno) : "");
    return 0;
}
