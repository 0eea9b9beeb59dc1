/* Maps file argv[1] shared, stores argv[2] through the mapping, msync(MS_SYNC)s, stores more
 * without msync, says so, waits. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, 8192) != 0)
        return 1;
    char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return 1;
    memcpy(m, argv[2], strlen(argv[2]));
    if (msync(m, 8192, MS_SYNC) != 0)
        return 1;
    memcpy(m + 4096, "late", 4); /* after the last msync: lost with the LibOS */
    printf("synced\n");
    fflush(stdout);
    for (;;)
        pause();
}
