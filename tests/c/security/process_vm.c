/* process_vm_writev/readv to init (pid 1), the parent and a host pid. */
#include "sec.h"
#include <sys/uio.h>

static pid_t parent;
static char local[8] = "garbage";

static long vm(pid_t pid, int write)
{
    struct iovec l = {local, sizeof local};
    struct iovec r = {(void *)0x1000, sizeof local}; /* never mapped: no harm if it went through */
    return write ? process_vm_writev(pid, &l, 1, &r, 1, 0) : process_vm_readv(pid, &l, 1, &r, 1, 0);
}
static long w_init(void) { return vm(1, 1); }
static long r_init(void) { return vm(1, 0); }
static long w_parent(void) { return vm(parent, 1); }
static long w_host(void) { return vm(HOSTPID, 1); }
static long r_host(void) { return vm(HOSTPID, 0); }

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    parent = getpid();
    PROBE_STRICT("process_vm_writev(1)", w_init);
    PROBE_STRICT("process_vm_readv(1)", r_init);
    PROBE_STRICT("process_vm_writev(parent)", w_parent);
    PROBE("process_vm_writev(host pid)", w_host);
    PROBE("process_vm_readv(host pid)", r_host);
    return sec_finish();
}
