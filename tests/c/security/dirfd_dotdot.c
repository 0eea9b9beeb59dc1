/* openat with the dirfd of a hostfs directory and "../..": no way out of the LibOS tree. */
#include "sec.h"

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/sub", MOUNT);
    int d = open(p, O_RDONLY | O_DIRECTORY);
    if (d < 0) {
        printf("open mount/sub: %s\n", errname(errno));
        return 1;
    }
    const char *base = strrchr(SECRET, '/');
    snprintf(p, sizeof p, "../..%s", base);
    try_open("dirfd(mount/sub) ../../<secret name>", d, p);
    snprintf(p, sizeof p, "../../../../../../../../..%s", SECRET);
    try_open("dirfd(mount/sub) ../..(x9)/<secret>", d, p);
    try_open("dirfd(mount/sub) absolute secret", d, SECRET);
    int m = open(MOUNT, O_RDONLY | O_DIRECTORY);
    snprintf(p, sizeof p, "..%s", base);
    try_open("dirfd(mount) ../<secret name>", m, p);
    int up = openat(m, "..", O_RDONLY | O_DIRECTORY);
    if (up >= 0) {
        try_open("dirfd(mount/..) <secret name>", up, base + 1);
        close(up);
    } else {
        printf("dirfd(mount/..): refused %s\n", errname(errno));
    }
    /* O_PATH of the mount's parent, then reopen through /proc/self/fd */
    int op = openat(m, "..", O_PATH);
    if (op >= 0) {
        snprintf(p, sizeof p, "/proc/self/fd/%d/%s", op, base + 1);
        try_open("/proc/self/fd/<mount/..>/<secret name>", AT_FDCWD, p);
        close(op);
    }
    struct stat st;
    snprintf(p, sizeof p, "..%s", base);
    if (fstatat(m, p, &st, 0) == 0)
        printf("fstatat dirfd(mount) ../<secret name>: contained\n");
    else
        printf("fstatat dirfd(mount) ../<secret name>: refused %s\n", errname(errno));
    close(m);
    close(d);
    return sec_finish();
}
