/* Writes argv[2] to file argv[1] and closes it (no fsync), makes a few calls the LibOS serves
 * (it looks at closes between them), says so, waits. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, argv[2], strlen(argv[2])) < 0 || close(fd) != 0)
        return 1;
    struct utsname u;
    for (int i = 0; i < 64; i++) {
        uname(&u);
        usleep(1000);
    }
    printf("closed\n");
    fflush(stdout);
    for (;;)
        pause();
}
