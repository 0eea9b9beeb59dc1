/* sysinfo, sysconf: sanity of values (never the values themselves, which are host-specific),
 * and how Linux gives uptime and loads. */
#include "common.h"
#include <sys/sysinfo.h>
#include <time.h>

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct sysinfo si;
    struct timespec before, after;
    clock_gettime(CLOCK_BOOTTIME, &before);
    OK("sysinfo", sysinfo(&si));
    clock_gettime(CLOCK_BOOTTIME, &after);
    /* Linux: the boot-time clock's seconds, rounded up; the loads are the kernel's averages
     * shifted from 11 to 16 bits of fraction, so their low 5 bits are 0 */
    long up_lo = before.tv_sec + (before.tv_nsec != 0);
    long up_hi = after.tv_sec + (after.tv_nsec != 0);
    printf("uptime is CLOCK_BOOTTIME rounded up: %d\n",
           up_lo <= (long)si.uptime && (long)si.uptime <= up_hi);
    printf("loads in kernel units: %d\n",
           !(si.loads[0] & 31) && !(si.loads[1] & 31) && !(si.loads[2] & 31));
    printf("mem_unit > 0: %d\n", si.mem_unit > 0);
    printf("totalram > 0: %d\n", si.totalram > 0);
    printf("freeram <= totalram: %d\n", si.freeram <= si.totalram);
    printf("freeswap <= totalswap: %d\n", si.freeswap <= si.totalswap);
    printf("procs >= 1: %d\n", si.procs >= 1);
    printf("uptime >= 0: %d\n", si.uptime >= 0);
    printf("nprocs >= 1: %d\n", sysconf(_SC_NPROCESSORS_ONLN) >= 1);
    printf("pagesize: %ld\n", sysconf(_SC_PAGESIZE));
    printf("phys pages > 0: %d\n", sysconf(_SC_PHYS_PAGES) > 0);
    printf("clock ticks: %ld\n", sysconf(_SC_CLK_TCK));
    ERR("sysinfo NULL", sysinfo(NULL), EFAULT);
    return t_finish();
}
