/* The *at forms of the extended attribute calls (Linux 6.13), through syscall(2): relative to
 * a dirfd, AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH on a descriptor, struct xattr_args and its
 * size checks. */
#include "common.h"
#include <sys/syscall.h>
#include <sys/xattr.h>

#define NR_setxattrat 463
#define NR_getxattrat 464
#define NR_listxattrat 465
#define NR_removexattrat 466

struct xattr_args {
    unsigned long long value;
    unsigned int size;
    unsigned int flags;
};

static long set_at(int dfd, const char *path, int at, const char *name, const char *v, unsigned flags)
{
    struct xattr_args a = {.value = (unsigned long)v, .size = (unsigned)strlen(v), .flags = flags};
    return syscall(NR_setxattrat, dfd, path, at, name, &a, sizeof a);
}

static long get_at(int dfd, const char *path, int at, const char *name, char *buf, unsigned size)
{
    struct xattr_args a = {.value = (unsigned long)buf, .size = size};
    return syscall(NR_getxattrat, dfd, path, at, name, &a, sizeof a);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    OK("mkdir d", mkdir("d", 0755));
    CHECK(write_file("d/f", "data") == 0);
    OK("symlink", symlink("f", "d/l"));
    int d = open("d", O_RDONLY | O_DIRECTORY);
    char buf[64] = {0};

    OK("setxattrat relative to a dirfd", set_at(d, "f", 0, "user.color", "blue", 0));
    long n = get_at(AT_FDCWD, "d/f", 0, "user.color", buf, sizeof buf);
    printf("getxattrat AT_FDCWD: %ld %.*s\n", n, n > 0 ? (int)n : 0, buf);
    printf("getxattr agrees: %ld\n", (long)getxattr("d/f", "user.color", buf, sizeof buf));
    printf("size query: %ld\n", get_at(d, "f", 0, "user.color", NULL, 0));
    ERR("buffer too small", get_at(d, "f", 0, "user.color", buf, 2), ERANGE);
    ERR("XATTR_CREATE of an existing one", set_at(d, "f", 0, "user.color", "red", XATTR_CREATE), EEXIST);
    ERR("XATTR_REPLACE of a missing one", set_at(d, "f", 0, "user.size", "big", XATTR_REPLACE), ENODATA);
    OK("setxattrat through the symlink", set_at(d, "l", 0, "user.shape", "round", 0));
    ERR("user.* on a symlink itself (AT_SYMLINK_NOFOLLOW)",
        set_at(d, "l", AT_SYMLINK_NOFOLLOW, "user.x", "1", 0), EPERM);

    char list[256];
    n = syscall(NR_listxattrat, d, "f", 0, list, sizeof list);
    int color = 0, shape = 0;
    for (char *p = list; n > 0 && p < list + n; p += strlen(p) + 1) {
        color |= strcmp(p, "user.color") == 0;
        shape |= strcmp(p, "user.shape") == 0;
    }
    printf("listxattrat: color %d shape %d\n", color, shape);

    int f = open("d/f", O_RDONLY);
    memset(buf, 0, sizeof buf);
    n = get_at(f, "", AT_EMPTY_PATH, "user.shape", buf, sizeof buf);
    printf("getxattrat AT_EMPTY_PATH: %ld %.*s\n", n, n > 0 ? (int)n : 0, buf);
    n = get_at(f, NULL, AT_EMPTY_PATH, "user.shape", buf, sizeof buf);
    printf("getxattrat NULL path, AT_EMPTY_PATH: %ld\n", n);
    ERR("empty path without AT_EMPTY_PATH", get_at(f, "", 0, "user.shape", buf, sizeof buf), ENOENT);
    OK("removexattrat AT_EMPTY_PATH", syscall(NR_removexattrat, f, "", AT_EMPTY_PATH, "user.shape"));
    ERR("removexattrat again", syscall(NR_removexattrat, d, "f", 0, "user.shape"), ENODATA);
    close(f);

    struct xattr_args a = {.value = (unsigned long)buf, .size = sizeof buf};
    ERR("xattr_args too small", syscall(NR_getxattrat, d, "f", 0, "user.color", &a, 8), EINVAL);
    char big[64] = {0};
    memcpy(big, &a, sizeof a);
    OK("xattr_args larger, zero-filled", syscall(NR_getxattrat, d, "f", 0, "user.color", big, sizeof big));
    big[40] = 1;
    ERR("xattr_args larger, a byte set", syscall(NR_getxattrat, d, "f", 0, "user.color", big, sizeof big), E2BIG);
    ERR("xattr_args past a page", syscall(NR_getxattrat, d, "f", 0, "user.color", &a, 8192), E2BIG);
    struct xattr_args fl = {.value = (unsigned long)buf, .size = sizeof buf, .flags = 1};
    ERR("getxattrat with flags", syscall(NR_getxattrat, d, "f", 0, "user.color", &fl, sizeof fl), EINVAL);
    ERR("unknown AT_ flag", get_at(d, "f", 0x8000, "user.color", buf, sizeof buf), EINVAL);
    ERR("missing file", get_at(d, "nope", 0, "user.color", buf, sizeof buf), ENOENT);
    ERR("bad dirfd", get_at(999, "f", 0, "user.color", buf, sizeof buf), EBADF);
    close(d);
    return t_finish();
}
