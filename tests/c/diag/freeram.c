/* What sysinfo says of memory before and after this process touches argv[1] MiB: the total,
 * and how much of the free memory went. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>

static unsigned long mib(unsigned long n, unsigned int unit)
{
    return (unsigned long)((unsigned long long)n * unit >> 20);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    size_t size = strtoul(argv[1], NULL, 10) << 20;
    struct sysinfo before, after;
    if (sysinfo(&before) != 0)
        return 2;
    char *p = malloc(size);
    if (!p)
        return 2;
    memset(p, 1, size);
    if (sysinfo(&after) != 0)
        return 2;
    printf("total %lu MiB\n", mib(before.totalram, before.mem_unit));
    long gone = (long)mib(before.freeram, before.mem_unit) - (long)mib(after.freeram, after.mem_unit);
    printf("free went down by %ld MiB\n", gone);
    return 0;
}
