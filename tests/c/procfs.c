/* procfs: /proc/self/exe, cmdline, comm, fd/, cwd, status, and /proc/<pid> of a child. */
#include "common.h"
#include <sys/wait.h>

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    CHECK(n > 0);
    buf[n > 0 ? n : 0] = 0;
    printf("exe is absolute: %d ends with /procfs: %d\n", buf[0] == '/', ends_with(buf, "/procfs"));
    struct stat a, b;
    CHECK(stat("/proc/self/exe", &a) == 0 && stat(buf, &b) == 0);
    printf("exe link and target are the same file: %d\n", a.st_ino == b.st_ino && a.st_dev == b.st_dev);

    int fd = open("/proc/self/cmdline", O_RDONLY);
    char cmd[4096];
    n = read(fd, cmd, sizeof cmd);
    close(fd);
    int args = 0, match = 1;
    for (ssize_t off = 0; off < n; off += strlen(cmd + off) + 1) {
        if (args < argc && strcmp(cmd + off, argv[args]) != 0)
            match = 0;
        args++;
    }
    printf("cmdline args: %d (argc %d) match: %d\n", args, argc, match);
    const char *comm = read_file("/proc/self/comm");
    printf("comm: %s", comm ? comm : "(error)\n");

    CHECK(dup2(1, 20) == 20);
    CHECK(write_file("named", "") == 0);
    int nf = open("named", O_RDONLY);
    CHECK(dup2(nf, 21) == 21);
    close(nf);
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    int has[32] = {0}, others = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        int v = atoi(de->d_name);
        if (v == 0 || v == 1 || v == 2 || v == 20 || v == 21)
            has[v] = 1;
        else
            others++;
        CHECK(de->d_type == DT_LNK || de->d_type == DT_UNKNOWN);
    }
    if (d)
        closedir(d);
    printf("fd dir has 0,1,2: %d 20,21: %d, others (the dir itself): %d\n",
           has[0] && has[1] && has[2], has[20] && has[21], others);
    n = readlink("/proc/self/fd/21", buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("fd 21 -> ...%s\n", ends_with(buf, "/named") ? "/named" : buf);
    CHECK(close(21) == 0);
    ERR("closed fd gone", ({ struct stat st; lstat("/proc/self/fd/21", &st); }), ENOENT);

    char cwd[PATH_MAX];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    n = readlink("/proc/self/cwd", buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("cwd link matches getcwd: %d\n", strcmp(buf, cwd) == 0);

    const char *st = read_file("/proc/self/status");
    printf("status has Name: procfs: %d\n", st && strstr(st, "Name:\tprocfs\n") != NULL);
    char want[64];
    snprintf(want, sizeof want, "\nPid:\t%d\n", getpid());
    printf("status has own pid: %d\n", st && strstr(st, want) != NULL);
    snprintf(want, sizeof want, "/proc/%d", getpid());
    printf("/proc/<pid> of self exists: %d\n", access(want, F_OK) == 0);
    CHECK(readlink("/proc/self", buf, sizeof buf) > 0);
    const char *stat_line = read_file("/proc/self/stat");
    printf("stat has (procfs): %d\n", stat_line && strstr(stat_line, " (procfs) ") != NULL);
    const char *maps = read_file("/proc/self/maps");
    printf("maps non-empty: %d\n", maps && strlen(maps) > 0);
    const char *mounts = read_file("/proc/self/mounts");
    printf("mounts non-empty: %d\n", mounts && strlen(mounts) > 0);

    int p[2];
    CHECK(pipe(p) == 0);
    pid_t c = fork();
    if (c == 0) {
        char x;
        close(p[1]);
        read(p[0], &x, 1);
        _exit(0);
    }
    close(p[0]);
    snprintf(want, sizeof want, "/proc/%d/cmdline", c);
    fd = open(want, O_RDONLY);
    n = fd >= 0 ? read(fd, cmd, sizeof cmd) : -1;
    if (fd >= 0)
        close(fd);
    printf("child cmdline readable: %d same argv0: %d\n", n > 0, n > 0 && strcmp(cmd, argv[0]) == 0);
    close(p[1]);
    int status;
    waitpid(c, &status, 0);
    printf("child gone from /proc: %d\n", access(want, F_OK) != 0);
    const char *cpu = read_file("/proc/cpuinfo");
    printf("cpuinfo has processor: %d\n", cpu && strstr(cpu, "processor") != NULL);
    const char *mem = read_file("/proc/meminfo");
    printf("meminfo has MemTotal: %d\n", mem && strstr(mem, "MemTotal:") != NULL);
    const char *up = read_file("/proc/uptime");
    double u1 = -1;
    printf("uptime parses: %d\n", up && sscanf(up, "%lf", &u1) == 1 && u1 >= 0);
    return t_finish();
}
