/* Writes argv[2] to file argv[1] and fsyncs it, writes more without fsync, says so, waits. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, argv[2], strlen(argv[2])) < 0 || fsync(fd) != 0)
        return 1;
    char late[256];
    snprintf(late, sizeof late, "%s.unsynced", argv[1]);
    int fd2 = open(late, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd2 < 0 || write(fd2, "late", 4) != 4)
        return 1;
    printf("synced\n");
    fflush(stdout);
    for (;;)
        pause();
}
