/* Signals never reach host processes: kill/tgkill/pidfd_open of a host pid give ESRCH. */
#include "sec.h"

static long k_host(void) { return kill(HOSTPID, 0); }
static long k_host_cont(void) { return kill(HOSTPID, SIGCONT); }
static long k_host_group(void) { return kill(-HOSTPID, 0); }
static long k_large(void) { return kill(4194000, 0); }
static long tgk_host(void) { return syscall(SYS_tgkill, HOSTPID, HOSTPID, 0); }
static long pidfd_host(void) { return syscall(434 /* pidfd_open */, HOSTPID, 0); }
static long sigqueue_host(void)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_code = SI_QUEUE;
    return syscall(SYS_rt_sigqueueinfo, HOSTPID, 0, &si);
}

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    /* kill(-1, 0) reaches only LibOS processes; whatever it answers, we must survive it */
    kill(-1, 0);
    printf("kill(-1, 0): contained\n");
    PROBE("kill(host pid, 0)", k_host);
    PROBE("kill(host pid, SIGCONT)", k_host_cont);
    PROBE("kill(-host pgid, 0)", k_host_group);
    PROBE("kill(4194000, 0)", k_large);
    PROBE("tgkill(host pid)", tgk_host);
    PROBE("pidfd_open(host pid)", pidfd_host);
    PROBE("rt_sigqueueinfo(host pid)", sigqueue_host);
    return sec_finish();
}
