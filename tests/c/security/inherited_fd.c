/* Descriptors of the host: `occlum run` is started by a shell that may hold host files open
 * without close-on-exec (`exec 7</etc/shadow`). A program inside starts with its standard
 * streams only, as Occlum's programs do; a descriptor it inherits from the host is a file it
 * can read whatever the LibOS's file systems say. */
#include "sec.h"

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    int open_fds = 0;
    for (int fd = 3; fd < 1024; fd++) {
        if (fcntl(fd, F_GETFD) < 0)
            continue;
        open_fds++;
        char label[64];
        snprintf(label, sizeof label, "inherited fd %d", fd);
        char buf[512] = {0};
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        if (n > 0 && strstr(buf, "HOST-SECRET"))
            escape(label, "read the host secret");
        else
            escape(label, "a descriptor the program did not open");
    }
    if (!open_fds)
        printf("descriptors above 2 at start: refused none\n");
    return sec_finish();
}
