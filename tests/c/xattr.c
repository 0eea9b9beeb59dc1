/* Extended attributes as root on a local file system (ext4 or tmpfs natively, ramfs/SEFS in the
 * LibOS): set/get/list/remove, XATTR_CREATE/REPLACE, size-0 queries, ERANGE, ENODATA, name and
 * value limits, namespaces, symlinks, descriptors, and attributes following the inode through
 * rename, link and writes. Listings are printed sorted (file systems order them differently). */
#include "common.h"
#include <sys/xattr.h>

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Print the names of `list` (len bytes), sorted. */
static void show_names(const char *label, char *list, ssize_t len)
{
    char *names[64];
    int n = 0;
    for (char *p = list; p < list + len && n < 64; p += strlen(p) + 1)
        names[n++] = p;
    qsort(names, n, sizeof names[0], cmp);
    printf("%s:", label);
    for (int i = 0; i < n; i++)
        printf(" %s", names[i]);
    printf("\n");
}

static void list(const char *label, const char *path, int nofollow)
{
    char buf[4096];
    ssize_t want = nofollow ? llistxattr(path, NULL, 0) : listxattr(path, NULL, 0);
    ssize_t got = nofollow ? llistxattr(path, buf, sizeof buf) : listxattr(path, buf, sizeof buf);
    if (got < 0) {
        printf("%s: %s\n", label, errname(errno));
        return;
    }
    if (want != got)
        printf("%s: size query %zd, list %zd\n", label, want, got);
    show_names(label, buf, got);
}

static void get(const char *label, const char *path, const char *name)
{
    char buf[256];
    ssize_t n = getxattr(path, name, buf, sizeof buf - 1);
    if (n < 0) {
        printf("%s: %s\n", label, errname(errno));
        return;
    }
    buf[n] = 0;
    printf("%s: %zd \"%s\"\n", label, n, buf);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(write_file("f", "contents") == 0);
    char buf[256];

    ERR("get missing", getxattr("f", "user.a", buf, sizeof buf), ENODATA);
    list("fresh file", "f", 0);
    OK("set create", setxattr("f", "user.a", "hello", 5, XATTR_CREATE));
    ERR("set create again", setxattr("f", "user.a", "x", 1, XATTR_CREATE), EEXIST);
    ERR("replace missing", setxattr("f", "user.b", "x", 1, XATTR_REPLACE), ENODATA);
    OK("replace", setxattr("f", "user.a", "hi", 2, XATTR_REPLACE));
    ERR("both flags, exists", setxattr("f", "user.a", "x", 1, XATTR_CREATE | XATTR_REPLACE),
        EEXIST);
    ERR("both flags, missing", setxattr("f", "user.z", "x", 1, XATTR_CREATE | XATTR_REPLACE),
        ENODATA);
    ERR("bad flags", setxattr("f", "user.a", "x", 1, 4), EINVAL);
    printf("size query: %zd\n", getxattr("f", "user.a", NULL, 0));
    ERR("small buffer", getxattr("f", "user.a", buf, 1), ERANGE);
    get("get", "f", "user.a");
    OK("set empty value", setxattr("f", "user.empty", "", 0, 0));
    get("get empty", "f", "user.empty");
    OK("set binary", setxattr("f", "user.bin", "a\0b\377", 4, 0));
    printf("binary size: %zd\n", getxattr("f", "user.bin", buf, sizeof buf));
    CHECK(memcmp(buf, "a\0b\377", 4) == 0);
    list("list", "f", 0);
    ERR("list small buffer", listxattr("f", buf, 3), ERANGE);

    /* names and values at and past the limits */
    char name[300];
    strcpy(name, "user.");
    memset(name + 5, 'n', 250);
    name[255] = 0;
    OK("255-byte name", setxattr("f", name, "v", 1, 0));
    OK("remove it", removexattr("f", name));
    name[255] = 'n';
    name[256] = 0;
    ERR("256-byte name", setxattr("f", name, "v", 1, 0), ERANGE);
    ERR("get 256-byte name", getxattr("f", name, buf, sizeof buf), ERANGE);
    ERR("empty name", setxattr("f", "", "v", 1, 0), ERANGE);
    ERR("prefix only", setxattr("f", "user.", "v", 1, 0), EINVAL);
    ERR("get prefix only", getxattr("f", "user.", buf, sizeof buf), EINVAL);
    ERR("unknown namespace", setxattr("f", "os2.x", "v", 1, 0), EOPNOTSUPP);
    ERR("get unknown namespace", getxattr("f", "nope", buf, sizeof buf), EOPNOTSUPP);
    ERR("system.* unknown", setxattr("f", "system.occlum", "v", 1, 0), EOPNOTSUPP);
    static char big[65537];
    ERR("value of 64 KiB + 1", setxattr("f", "user.big", big, sizeof big, 0), E2BIG);
    OK("value of 4000 bytes", setxattr("f", "user.big", big, 4000, 0));
    printf("big size: %zd\n", getxattr("f", "user.big", NULL, 0));
    OK("remove big", removexattr("f", "user.big"));

    /* root's namespaces */
    OK("trusted", setxattr("f", "trusted.t", "tv", 2, 0));
    get("get trusted", "f", "trusted.t");
    OK("security", setxattr("f", "security.occlum", "sv", 2, 0));
    get("get security", "f", "security.occlum");
    list("all namespaces", "f", 0);
    OK("remove trusted", removexattr("f", "trusted.t"));
    OK("remove security", removexattr("f", "security.occlum"));

    OK("remove", removexattr("f", "user.empty"));
    ERR("remove again", removexattr("f", "user.empty"), ENODATA);
    ERR("remove never set", removexattr("f", "user.never"), ENODATA);
    ERR("missing file", getxattr("nope", "user.a", buf, sizeof buf), ENOENT);
    ERR("set on missing file", setxattr("nope", "user.a", "v", 1, 0), ENOENT);

    /* directories, symlinks */
    CHECK(mkdir("d", 0755) == 0);
    OK("dir", setxattr("d", "user.dir", "dv", 2, 0));
    get("get dir", "d", "user.dir");
    list("list dir", "d", 0);
    CHECK(symlink("f", "l") == 0);
    get("through symlink", "l", "user.a");
    ERR("lset user on symlink", lsetxattr("l", "user.x", "v", 1, 0), EPERM);
    ERR("lget user on symlink", lgetxattr("l", "user.a", buf, sizeof buf), ENODATA);
    ERR("lremove user on symlink", lremovexattr("l", "user.a"), EPERM);
    list("llist symlink", "l", 1);
    list("list through symlink", "l", 0);
    OK("trusted on symlink", lsetxattr("l", "trusted.l", "lv", 2, 0));
    printf("lget trusted: %zd\n", lgetxattr("l", "trusted.l", buf, sizeof buf));
    list("llist symlink again", "l", 1);

    /* descriptors */
    int fd = open("f", O_RDWR);
    OK("fset", fsetxattr(fd, "user.fd", "fv", 2, 0));
    printf("fget: %zd\n", fgetxattr(fd, "user.fd", buf, sizeof buf));
    ssize_t n = flistxattr(fd, buf, sizeof buf);
    if (n >= 0)
        show_names("flist", buf, n);
    printf("flist size query matches: %d\n", flistxattr(fd, NULL, 0) == n);
    OK("fremove", fremovexattr(fd, "user.fd"));
    ERR("fremove again", fremovexattr(fd, "user.fd"), ENODATA);
    CHECK(write(fd, "more", 4) == 4);
    CHECK(ftruncate(fd, 2) == 0);
    close(fd);
    get("after write and truncate", "f", "user.a");
    int pfd = open("f", O_PATH);
    ERR("fget on O_PATH", fgetxattr(pfd, "user.a", buf, sizeof buf), EBADF);
    ERR("fset on O_PATH", fsetxattr(pfd, "user.a", "v", 1, 0), EBADF);
    close(pfd);
    int dfd = open("d", O_RDONLY | O_DIRECTORY);
    printf("fget dir: %zd\n", fgetxattr(dfd, "user.dir", buf, sizeof buf));
    close(dfd);
    int p[2];
    CHECK(pipe(p) == 0);
    ERR("fget on a pipe", fgetxattr(p[0], "user.a", buf, sizeof buf), ENODATA);
    ERR("fset on a pipe", fsetxattr(p[1], "user.a", "v", 1, 0), EPERM);
    n = flistxattr(p[0], buf, sizeof buf);
    printf("flist on a pipe: %zd\n", n);
    close(p[0]);
    close(p[1]);
    ERR("fget bad fd", fgetxattr(-1, "user.a", buf, sizeof buf), EBADF);

    /* attributes belong to the inode */
    CHECK(rename("f", "g") == 0);
    get("after rename", "g", "user.a");
    CHECK(link("g", "h") == 0);
    OK("set through link", setxattr("h", "user.linked", "lk", 2, 0));
    get("seen through other name", "g", "user.linked");
    CHECK(unlink("g") == 0);
    list("last name", "h", 0);
    return t_finish();
}
