/* /proc/self/root, /proc/1/root, /proc/self/cwd and other magic links lead nowhere outside. */
#include "sec.h"

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "/proc/self/root%s", SECRET);
    try_open("/proc/self/root/<secret>", AT_FDCWD, p);
    snprintf(p, sizeof p, "/proc/1/root%s", SECRET);
    try_open("/proc/1/root/<secret>", AT_FDCWD, p);
    snprintf(p, sizeof p, "/proc/self/root/../../../..%s", SECRET);
    try_open("/proc/self/root/../..(x4)/<secret>", AT_FDCWD, p);
    snprintf(p, sizeof p, "/proc/%d/root%s", HOSTPID, SECRET);
    try_open("/proc/<host pid>/root/<secret>", AT_FDCWD, p);
    snprintf(p, sizeof p, "/proc/%d/cmdline", HOSTPID);
    int hfd = open(p, O_RDONLY);
    if (hfd >= 0) {
        close(hfd);
        escape("/proc/<host pid>/cmdline", "a host process is visible");
    } else {
        printf("/proc/<host pid>/cmdline: refused %s\n", errname(errno));
    }
    snprintf(p, sizeof p, "/proc/self/cwd/../../../../../..%s", SECRET);
    try_open("/proc/self/cwd/../..(x6)/<secret>", AT_FDCWD, p);
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/root", buf, sizeof buf - 1);
    if (n >= 0) {
        buf[n] = 0;
        printf("readlink /proc/self/root is /: %s\n", strcmp(buf, "/") == 0 ? "contained" : "ESCAPED");
        escaped += strcmp(buf, "/") != 0;
    } else {
        printf("readlink /proc/self/root: refused %s\n", errname(errno));
    }
    int fd = open("/proc/self/root", O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        try_open("openat(/proc/self/root fd, <secret> relative)", fd, SECRET + 1);
        close(fd);
    }
    try_open("/proc/1/mem", AT_FDCWD, "/proc/1/mem");
    return sec_finish();
}
