/* Binds a Unix datagram socket to the abstract name argv[1] and prints the outcome: the
 * socket on standard input ("stdin"), or one made here ("own"). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path + 1, argv[1], sizeof a.sun_path - 2);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(argv[1]));
    int s = strcmp(argv[2], "stdin") == 0 ? 0 : socket(AF_UNIX, SOCK_DGRAM, 0);
    int r = bind(s, (struct sockaddr *)&a, len);
    printf("%s: %s\n", argv[2], r == 0 ? "bound" : strerror(errno));
    return 0;
}
