/* Reserves address space as a virtual machine's heap or code cache does: argv[1] MiB mapped
 * PROT_NONE and not committed, then 1 MiB. Says whether each was granted. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int reserve(size_t mib)
{
    void *p = mmap(NULL, mib << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        printf("reserving %zu MiB: %s\n", mib, strerror(errno));
        return 1;
    }
    printf("reserved %zu MiB\n", mib);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    int failed = reserve(strtoul(argv[1], NULL, 10));
    return failed + reserve(1);
}
