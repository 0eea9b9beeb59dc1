/* sysinfo, sysconf: sanity of values (never the values themselves, which are host-specific). */
#include "common.h"
#include <sys/sysinfo.h>

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct sysinfo si;
    OK("sysinfo", sysinfo(&si));
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
