/* ptrace in any form: TRACEME, ATTACH/SEIZE to the parent, to init and to a host pid. */
#include "sec.h"
#include <sys/ptrace.h>

static pid_t parent;

static long traceme(void) { return ptrace(PTRACE_TRACEME, 0, NULL, NULL); }
static long attach_parent(void)
{
    long r = ptrace(PTRACE_ATTACH, parent, NULL, NULL);
    if (r == 0)
        ptrace(PTRACE_DETACH, parent, NULL, NULL);
    return r;
}
static long attach_init(void)
{
    long r = ptrace(PTRACE_ATTACH, 1, NULL, NULL);
    if (r == 0)
        ptrace(PTRACE_DETACH, 1, NULL, NULL);
    return r;
}
static long seize_host(void)
{
    long r = ptrace(PTRACE_SEIZE, HOSTPID, NULL, NULL);
    if (r == 0)
        ptrace(PTRACE_DETACH, HOSTPID, NULL, NULL);
    return r;
}
static long peek_parent(void)
{
    errno = 0;
    long v = ptrace(PTRACE_PEEKDATA, parent, (void *)0x400000, NULL);
    return errno ? -1 : v;
}

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    parent = getpid();
    PROBE("ptrace(TRACEME)", traceme);
    PROBE("ptrace(ATTACH, parent)", attach_parent);
    PROBE("ptrace(ATTACH, 1)", attach_init);
    PROBE("ptrace(SEIZE, host pid)", seize_host);
    PROBE("ptrace(PEEKDATA, parent)", peek_parent);
    return sec_finish();
}
