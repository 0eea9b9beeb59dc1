/* /proc/sys and other facts about the machine a program reads: fs/pipe-max-size is the size a
 * pipe can be given (F_SETPIPE_SZ, F_GETPIPE_SZ), kernel/pid_max bounds the pids, the other
 * numbers are numbers, kernel/core_pattern is one line, kernel/hostname is uname's nodename,
 * net/ipv4/conf lists all, default and lo with their settings, /proc/config.gz (when the
 * kernel keeps it) is gzip data; the host's limits show the same values inside as natively. Nothing is written: natively that would change the host. */
#include "common.h"
#include <sys/utsname.h>

/* The whole of a /proc file as a long, or -1 (with the reason printed) if it is not one
 * decimal number followed by a newline. */
static long number(const char *path)
{
    const char *s = read_file(path);
    if (!s) {
        printf("%s: %s\n", path, errname(errno));
        return -1;
    }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || errno || strcmp(end, "\n") != 0) {
        printf("%s: not a number\n", path);
        return -1;
    }
    printf("%s: a number\n", path);
    return v;
}

static int has_entry(const char *dir, const char *name)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *de;
    int found = 0;
    while ((de = readdir(d)) != NULL)
        found |= strcmp(de->d_name, name) == 0;
    closedir(d);
    return found;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);

    long max = number("/proc/sys/fs/pipe-max-size");
    int p[2];
    CHECK(pipe(p) == 0);
    if (max > 0) {
        long got = fcntl(p[0], F_SETPIPE_SZ, (int)max);
        printf("F_SETPIPE_SZ to pipe-max-size: %s\n", got < 0 ? errname(errno) : "ok");
        CHECK(got == max && fcntl(p[0], F_GETPIPE_SZ) == max);
    }
    close(p[0]);
    close(p[1]);
    CHECK(number("/proc/sys/fs/pipe-user-pages-soft") >= 0);
    CHECK(number("/proc/sys/fs/pipe-user-pages-hard") >= 0);
    CHECK(number("/proc/sys/fs/nr_open") > 0);
    CHECK(number("/proc/sys/fs/file-max") > 0);
    CHECK(number("/proc/sys/kernel/tainted") >= 0);
    CHECK(number("/proc/sys/kernel/threads-max") > 0);
    CHECK(number("/proc/sys/vm/max_map_count") > 0);
    CHECK(number("/proc/sys/vm/overcommit_memory") >= 0);
    /* the host's values, the same natively and inside (on one machine) */
    long pid_max = number("/proc/sys/kernel/pid_max");
    printf("own pid below pid_max: %s\n", getpid() < pid_max ? "yes" : "no");
    printf("pid_max %ld, pipe-max-size %ld, nr_open %ld\n", pid_max, max,
           number("/proc/sys/fs/nr_open"));

    const char *s = read_file("/proc/sys/kernel/core_pattern");
    printf("core_pattern: %s\n",
           !s ? errname(errno) : s[0] && strchr(s, '\n') == s + strlen(s) - 1 ? "one line" : "?");
    struct utsname u;
    CHECK(uname(&u) == 0);
    s = read_file("/proc/sys/kernel/hostname");
    printf("hostname is uname's: %s\n",
           s && strncmp(s, u.nodename, strlen(u.nodename)) == 0 && s[strlen(u.nodename)] == '\n'
               ? "yes" : "no");

    const char *conf = "/proc/sys/net/ipv4/conf";
    printf("conf has all, default, lo: %s\n",
           has_entry(conf, "all") && has_entry(conf, "default") && has_entry(conf, "lo") ? "yes"
                                                                                        : "no");
    long fwd = number("/proc/sys/net/ipv4/conf/lo/forwarding");
    printf("lo forwarding is 0 or 1: %s\n", fwd == 0 || fwd == 1 ? "yes" : "no");
    CHECK(number("/proc/sys/net/core/somaxconn") > 0);

    int fd = open("/proc/config.gz", O_RDONLY);
    if (fd < 0) {
        printf("config.gz: %s\n", errname(errno));
    } else {
        unsigned char magic[2] = {0};
        CHECK(read(fd, magic, 2) == 2);
        printf("config.gz: %s\n", magic[0] == 0x1f && magic[1] == 0x8b ? "gzip" : "not gzip");
        close(fd);
    }
    return t_finish();
}
