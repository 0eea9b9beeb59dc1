/* stat, lstat, fstat, newfstatat and statx: type, mode, size, nlink. */
#include "common.h"
#include <stdint.h>
#include <sys/syscall.h>

/* statx through the raw syscall with our own struct: musl 1.2.3 has no statx wrapper. */
struct t_statx {
    uint32_t stx_mask, stx_blksize;
    uint64_t stx_attributes;
    uint32_t stx_nlink, stx_uid, stx_gid;
    uint16_t stx_mode, pad0;
    uint64_t stx_ino, stx_size, stx_blocks, stx_attributes_mask;
    char times[64];
    uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
    uint64_t spare[14];
};
#define T_STATX_TYPE 0x1u
#define T_STATX_SIZE 0x200u
#define T_STATX_BASIC_STATS 0x7ffu
#define t_statx(d, p, f, m, b) ((int)syscall(SYS_statx, d, p, f, m, b))

static void show(const char *label, int r, struct stat *st)
{
    if (r != 0) {
        printf("%s: %s\n", label, errname(errno));
        return;
    }
    printf("%s: %s mode=%o size=%ld nlink=%ld\n", label, ftype(st->st_mode),
           st->st_mode & 07777, S_ISDIR(st->st_mode) ? -1L : (long)st->st_size,
           S_ISDIR(st->st_mode) ? -1L : (long)st->st_nlink);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct stat st, st2;

    CHECK(write_file("f", "0123456789") == 0);
    CHECK(chmod("f", 0640) == 0);
    CHECK(mkdir("d", 0750) == 0);
    CHECK(symlink("f", "l") == 0);
    CHECK(link("f", "h") == 0);
    CHECK(mkfifo("p", 0600) == 0);

    show("stat f", stat("f", &st), &st);
    show("stat h", stat("h", &st), &st);
    show("stat d", stat("d", &st), &st);
    show("stat l", stat("l", &st), &st);
    show("lstat l", lstat("l", &st), &st);
    printf("lstat l size is target length: %d\n", st.st_size == 1);
    show("stat p", stat("p", &st), &st);
    show("stat missing", stat("missing", &st), &st);
    show("stat f/x", stat("f/x", &st), &st);

    int fd = open("f", O_RDONLY);
    show("fstat f", fstat(fd, &st), &st);
    CHECK(stat("f", &st2) == 0);
    CHECK(st.st_ino == st2.st_ino && st.st_dev == st2.st_dev);
    CHECK(stat("h", &st2) == 0 && st.st_ino == st2.st_ino);
    close(fd);
    ERR("fstat bad fd", fstat(999, &st), EBADF);

    int dfd = open("d", O_RDONLY | O_DIRECTORY);
    CHECK(write_file("d/inner", "xyz") == 0);
    show("fstatat d inner", fstatat(dfd, "inner", &st, 0), &st);
    show("fstatat cwd l nofollow", fstatat(AT_FDCWD, "l", &st, AT_SYMLINK_NOFOLLOW), &st);
    show("fstatat empty path", fstatat(dfd, "", &st, AT_EMPTY_PATH), &st);
    ERR("fstatat empty without flag", fstatat(dfd, "", &st, 0), ENOENT);
    ERR("fstatat bad flag", fstatat(dfd, "inner", &st, 0x40000000), EINVAL);
    ERR("fstatat file dirfd", ({ int f = open("f", O_RDONLY); int r = fstatat(f, "x", &st, 0); int e = errno; close(f); errno = e; r; }), ENOTDIR);
    show("raw newfstatat", (int)syscall(SYS_newfstatat, AT_FDCWD, "f", &st, 0), &st);

    struct t_statx sx;
    int r = t_statx(AT_FDCWD, "f", 0, T_STATX_BASIC_STATS, &sx);
    CHECK(r == 0);
    printf("statx f: %s mode=%o size=%llu nlink=%u has-type=%d has-size=%d\n",
           ftype(sx.stx_mode), sx.stx_mode & 07777, (unsigned long long)sx.stx_size,
           sx.stx_nlink, !!(sx.stx_mask & T_STATX_TYPE), !!(sx.stx_mask & T_STATX_SIZE));
    CHECK(stat("f", &st) == 0 && sx.stx_ino == st.st_ino);
    r = t_statx(AT_FDCWD, "l", AT_SYMLINK_NOFOLLOW, T_STATX_BASIC_STATS, &sx);
    printf("statx l nofollow: %s\n", r == 0 ? ftype(sx.stx_mode) : errname(errno));
    r = t_statx(dfd, "", AT_EMPTY_PATH, T_STATX_TYPE, &sx);
    printf("statx empty path: %s\n", r == 0 ? ftype(sx.stx_mode) : errname(errno));
    ERR("statx missing", t_statx(AT_FDCWD, "missing", 0, T_STATX_BASIC_STATS, &sx), ENOENT);
    close(dfd);

    /* size follows writes and truncation */
    fd = open("f", O_WRONLY | O_APPEND);
    CHECK(write(fd, "abc", 3) == 3);
    CHECK(fstat(fd, &st) == 0);
    printf("size after append: %ld\n", (long)st.st_size);
    CHECK(ftruncate(fd, 4096 * 3 + 1) == 0);
    CHECK(fstat(fd, &st) == 0);
    printf("size after extend: %ld blksize>0: %d\n", (long)st.st_size, st.st_blksize > 0);
    close(fd);
    CHECK(unlink("h") == 0);
    CHECK(stat("f", &st) == 0);
    printf("nlink after unlink of hard link: %ld\n", (long)st.st_nlink);
    return t_finish();
}
