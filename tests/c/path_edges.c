/* Path edge cases of every path call, as Linux answers them: trailing slashes on files,
 * directories and symlinks, empty paths, AT_EMPTY_PATH, "." and ".." as the last component.
 *
 * Each case prints the call, its path and the errno (or "ok"): natively and inside the LibOS
 * the lists must be identical. The files are made again before each case that may change
 * them.
 */
#include "common.h"
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>

static void reset(void)
{
    rm_tree_at(AT_FDCWD, "w");
    mkdir("w", 0755);
    CHECK(chdir("w") == 0);
    CHECK(write_file("f", "contents\n") == 0);
    CHECK(mkdir("d", 0755) == 0);
    CHECK(symlink("f", "lf") == 0);
    CHECK(symlink("d", "ld") == 0);
    CHECK(symlink("nowhere", "dang") == 0);
    CHECK(chdir("..") == 0);
}

/* a result as "ok" or the errno's name */
#define R(label, expr)                                                                 \
    do {                                                                               \
        reset();                                                                       \
        CHECK(chdir("w") == 0);                                                        \
        errno = 0;                                                                     \
        long _r = (long)(expr);                                                        \
        printf("%-44s %s\n", label, _r < 0 ? errname(errno) : "ok");                   \
        if (_r >= 0 && _r > 2 && strncmp(label, "open", 4) == 0)                       \
            close((int)_r);                                                            \
        CHECK(chdir("..") == 0);                                                       \
    } while (0)

static char LONG_NAME[NAME_MAX + 2]; /* one byte past NAME_MAX */
static const char *PATHS[] = {"f/", "d/", "lf/", "ld/", "dang/", "none/", "", "f/.", "d/.",
                              "d/..", "f/..", ".", "..", "none", "d//", "ld", "lf", "dang",
                              "f/x", "none/x", "d/../f/", LONG_NAME};
#define NPATHS (sizeof PATHS / sizeof *PATHS)

static long do_openat2(const char *p, int flags)
{
    struct open_how how = {.flags = (unsigned long long)flags};
    if (flags & O_CREAT)
        how.mode = 0644;
    return syscall(SYS_openat2, AT_FDCWD, p, &how, sizeof how);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    char label[128];
    struct stat st;
    struct statx stx;
    struct statfs sfs;
    char buf[64];
    char *const args[] = {"x", NULL};
    char *const env[] = {NULL};

    memset(LONG_NAME, 'n', NAME_MAX + 1);
    for (size_t i = 0; i < NPATHS; i++) {
        const char *p = PATHS[i];
        const char *shown = p == LONG_NAME ? "<NAME_MAX+1 bytes>" : p;
#define L(call) (snprintf(label, sizeof label, "%s \"%s\"", call, shown), label)
        R(L("open O_RDONLY"), open(p, O_RDONLY));
        R(L("open O_WRONLY"), open(p, O_WRONLY));
        R(L("open O_CREAT"), open(p, O_WRONLY | O_CREAT, 0644));
        R(L("open O_CREAT|O_EXCL"), open(p, O_WRONLY | O_CREAT | O_EXCL, 0644));
        R(L("open O_DIRECTORY"), open(p, O_RDONLY | O_DIRECTORY));
        R(L("open O_PATH|O_NOFOLLOW"), open(p, O_PATH | O_NOFOLLOW));
        R(L("openat2 O_RDONLY"), do_openat2(p, O_RDONLY));
        R(L("stat"), stat(p, &st));
        R(L("lstat"), lstat(p, &st));
        R(L("statx"), statx(AT_FDCWD, p, 0, STATX_BASIC_STATS, &stx));
        R(L("statx nofollow"), statx(AT_FDCWD, p, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx));
        R(L("access"), access(p, F_OK));
        R(L("faccessat nofollow"), faccessat(AT_FDCWD, p, R_OK, AT_SYMLINK_NOFOLLOW));
        R(L("readlink"), readlink(p, buf, sizeof buf));
        R(L("mkdir"), mkdir(p, 0755));
        R(L("mknod"), mknod(p, S_IFREG | 0644, 0));
        R(L("mkfifo"), mkfifo(p, 0644));
        R(L("rmdir"), rmdir(p));
        R(L("unlink"), unlink(p));
        R(L("rename from"), rename(p, "new"));
        R(L("rename to"), rename("f", p));
        R(L("rename dir to"), rename("d", p));
        R(L("rename from, noreplace"), renameat2(AT_FDCWD, p, AT_FDCWD, "new", RENAME_NOREPLACE));
        R(L("rename to, noreplace"), renameat2(AT_FDCWD, "f", AT_FDCWD, p, RENAME_NOREPLACE));
        R(L("rename dir, exchange"), renameat2(AT_FDCWD, "d", AT_FDCWD, p, RENAME_EXCHANGE));
        R(L("link from"), link(p, "new"));
        R(L("link to"), link("f", p));
        R(L("symlink at"), symlink("f", p));
        R(L("symlink to"), symlink(p, "new"));
        R(L("chdir"), chdir(p));
        R(L("chmod"), chmod(p, 0700));
        R(L("fchmodat nofollow"), fchmodat(AT_FDCWD, p, 0700, AT_SYMLINK_NOFOLLOW));
        R(L("chown"), chown(p, 0, 0));
        R(L("lchown"), lchown(p, 0, 0));
        R(L("utimensat"), utimensat(AT_FDCWD, p, NULL, 0));
        R(L("utimensat nofollow"), utimensat(AT_FDCWD, p, NULL, AT_SYMLINK_NOFOLLOW));
        R(L("truncate"), truncate(p, 1));
        R(L("getxattr"), getxattr(p, "user.x", buf, sizeof buf));
        R(L("lgetxattr"), lgetxattr(p, "user.x", buf, sizeof buf));
        R(L("listxattr"), listxattr(p, buf, sizeof buf));
        R(L("removexattr"), removexattr(p, "user.x"));
        R(L("lremovexattr"), lremovexattr(p, "user.x"));
        R(L("umount2"), umount2(p, 0));
        R(L("execve"), execve(p, args, env));
#undef L
    }

    /* AT_EMPTY_PATH and NULL paths with descriptors */
    int fd;
#define WITH_FD(label, path, flags, expr)                                              \
    do {                                                                               \
        reset();                                                                       \
        CHECK(chdir("w") == 0);                                                        \
        fd = open(path, flags);                                                        \
        CHECK(fd >= 0);                                                                \
        errno = 0;                                                                     \
        long _r = (long)(expr);                                                        \
        printf("%-44s %s\n", label, _r < 0 ? errname(errno) : "ok");                   \
        close(fd);                                                                     \
        CHECK(chdir("..") == 0);                                                       \
    } while (0)
    WITH_FD("fstatat file AT_EMPTY_PATH", "f", O_RDONLY, fstatat(fd, "", &st, AT_EMPTY_PATH));
    WITH_FD("fstatat file empty, no flag", "f", O_RDONLY, fstatat(fd, "", &st, 0));
    WITH_FD("statx O_PATH AT_EMPTY_PATH", "f", O_PATH,
            statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx));
    WITH_FD("faccessat2 AT_EMPTY_PATH", "f", O_RDONLY,
            syscall(SYS_faccessat2, fd, "", R_OK, AT_EMPTY_PATH));
    WITH_FD("fchownat AT_EMPTY_PATH", "f", O_RDONLY, fchownat(fd, "", 0, 0, AT_EMPTY_PATH));
    WITH_FD("fchownat O_PATH AT_EMPTY_PATH", "f", O_PATH, fchownat(fd, "", 0, 0, AT_EMPTY_PATH));
    WITH_FD("linkat AT_EMPTY_PATH", "f", O_RDONLY,
            linkat(fd, "", AT_FDCWD, "new", AT_EMPTY_PATH));
    WITH_FD("linkat empty, no flag", "f", O_RDONLY, linkat(fd, "", AT_FDCWD, "new", 0));
    WITH_FD("readlinkat O_PATH symlink, empty", "lf", O_PATH | O_NOFOLLOW,
            readlinkat(fd, "", buf, sizeof buf));
    WITH_FD("readlinkat O_PATH file, empty", "f", O_PATH, readlinkat(fd, "", buf, sizeof buf));
    WITH_FD("utimensat fd NULL", "f", O_RDONLY, syscall(SYS_utimensat, fd, NULL, NULL, 0));
    WITH_FD("utimensat fd NULL nofollow", "f", O_RDONLY,
            syscall(SYS_utimensat, fd, NULL, NULL, AT_SYMLINK_NOFOLLOW));
    WITH_FD("utimensat O_PATH NULL", "f", O_PATH, syscall(SYS_utimensat, fd, NULL, NULL, 0));
    WITH_FD("utimensat AT_FDCWD NULL", "f", O_RDONLY,
            syscall(SYS_utimensat, AT_FDCWD, NULL, NULL, 0));
    WITH_FD("fchmod O_PATH", "f", O_PATH, fchmod(fd, 0600));
    WITH_FD("fchown O_PATH", "f", O_PATH, fchown(fd, 0, 0));
    WITH_FD("fchdir O_PATH dir", "d", O_PATH, fchdir(fd) == 0 ? chdir("..") : -1);
    WITH_FD("fgetxattr O_PATH", "f", O_PATH, fgetxattr(fd, "user.x", buf, sizeof buf));
    WITH_FD("openat file as dirfd", "f", O_RDONLY, openat(fd, "x", O_RDONLY));
    WITH_FD("openat dir, empty", "d", O_RDONLY, openat(fd, "", O_RDONLY));
    WITH_FD("mkdirat file as dirfd", "f", O_RDONLY, mkdirat(fd, "x", 0755));
    WITH_FD("execveat AT_EMPTY_PATH, no exec bit", "f", O_RDONLY,
            syscall(SYS_execveat, fd, "", args, env, AT_EMPTY_PATH));
    WITH_FD("umount2 of a plain directory", "d", O_RDONLY, umount2("d", 0));
    WITH_FD("fstatat AT_FDCWD AT_EMPTY_PATH", "f", O_RDONLY,
            fstatat(AT_FDCWD, "", &st, AT_EMPTY_PATH));
    WITH_FD("statx AT_FDCWD AT_EMPTY_PATH", "f", O_RDONLY,
            statx(AT_FDCWD, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx));
    WITH_FD("faccessat2 AT_FDCWD AT_EMPTY_PATH", "f", O_RDONLY,
            syscall(SYS_faccessat2, AT_FDCWD, "", W_OK, AT_EMPTY_PATH));
    WITH_FD("fchownat AT_FDCWD AT_EMPTY_PATH", "f", O_RDONLY,
            fchownat(AT_FDCWD, "", 0, 0, AT_EMPTY_PATH));
    WITH_FD("linkat AT_FDCWD AT_EMPTY_PATH", "f", O_RDONLY,
            linkat(AT_FDCWD, "", AT_FDCWD, "new", AT_EMPTY_PATH));
    WITH_FD("linkat dir AT_EMPTY_PATH", "d", O_RDONLY,
            linkat(fd, "", AT_FDCWD, "new", AT_EMPTY_PATH));
    WITH_FD("fchmodat2 AT_EMPTY_PATH", "f", O_RDONLY,
            syscall(452, fd, "", 0600, AT_EMPTY_PATH));
    WITH_FD("fchmodat2 O_PATH AT_EMPTY_PATH", "f", O_PATH,
            syscall(452, fd, "", 0600, AT_EMPTY_PATH));
    WITH_FD("fchmodat2 symlink nofollow", "f", O_RDONLY,
            syscall(452, AT_FDCWD, "lf", 0600, AT_SYMLINK_NOFOLLOW));
    WITH_FD("execveat dir AT_EMPTY_PATH", "d", O_RDONLY,
            syscall(SYS_execveat, fd, "", args, env, AT_EMPTY_PATH));
    WITH_FD("execveat O_PATH AT_EMPTY_PATH", "f", O_PATH,
            syscall(SYS_execveat, fd, "", args, env, AT_EMPTY_PATH));
    WITH_FD("execveat empty, no flag", "f", O_RDONLY,
            syscall(SYS_execveat, fd, "", args, env, 0));
    WITH_FD("openat O_PATH dir as dirfd", "d", O_PATH, openat(fd, "..", O_RDONLY));
    WITH_FD("mkdirat O_PATH dir as dirfd", "d", O_PATH, mkdirat(fd, "x", 0755));
    WITH_FD("getdents64 O_PATH dir", "d", O_PATH, syscall(SYS_getdents64, fd, buf, sizeof buf));
    WITH_FD("getdents64 file", "f", O_RDONLY, syscall(SYS_getdents64, fd, buf, sizeof buf));
    WITH_FD("fchdir file", "f", O_RDONLY, fchdir(fd));
    WITH_FD("fstatfs O_PATH", "f", O_PATH, fstatfs(fd, &sfs));
    WITH_FD("fsync O_PATH", "f", O_PATH, fsync(fd));

    /* extended attribute names and namespaces */
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    memcpy(longname, "user.", 5);
    longname[sizeof longname - 1] = 0;
    static char big[70000];
    WITH_FD("lsetxattr user. on a symlink", "f", O_RDONLY, lsetxattr("lf", "user.x", "v", 1, 0));
    WITH_FD("lsetxattr unknown namespace, symlink", "f", O_RDONLY,
            lsetxattr("lf", "bogus.x", "v", 1, 0));
    WITH_FD("lgetxattr user. on a symlink", "f", O_RDONLY,
            lgetxattr("lf", "user.x", buf, sizeof buf));
    WITH_FD("setxattr empty name", "f", O_RDONLY, setxattr("f", "", "v", 1, 0));
    WITH_FD("setxattr bad flags", "f", O_RDONLY, setxattr("f", "user.x", "v", 1, 4));
    WITH_FD("setxattr value too big", "f", O_RDONLY, setxattr("f", "user.x", big, sizeof big, 0));
    WITH_FD("getxattr unknown namespace", "f", O_RDONLY, getxattr("f", "bogus.x", buf, sizeof buf));
    WITH_FD("getxattr name too long", "f", O_RDONLY, getxattr("f", longname, buf, sizeof buf));
    WITH_FD("fgetxattr empty name", "f", O_RDONLY, fgetxattr(fd, "", buf, sizeof buf));
    WITH_FD("fremovexattr unknown namespace", "f", O_RDONLY, fremovexattr(fd, "bogus.x"));
    WITH_FD("removexattr user. on a fifo", "f", O_RDONLY,
            mkfifo("fifo", 0644) == 0 ? removexattr("fifo", "user.x") : -1);
    WITH_FD("execveat symlink nofollow", "f", O_RDONLY,
            syscall(SYS_execveat, AT_FDCWD, "lf", args, env, AT_SYMLINK_NOFOLLOW));
    WITH_FD("execveat bad flags", "f", O_RDONLY,
            syscall(SYS_execveat, AT_FDCWD, "f", args, env, 0x40000000));
    WITH_FD("ftruncate O_RDONLY", "f", O_RDONLY, ftruncate(fd, 0));

    /* a plain directory of the root file system (the union inside the LibOS) */
    char plain[64];
    snprintf(plain, sizeof plain, "/var/tmp/path-edges-%d", (int)getpid());
    mkdir_p(plain);
    errno = 0;
    printf("%-44s %s\n", "umount2 of a plain directory on /", umount2(plain, 0) < 0 ? errname(errno) : "ok");
    CHECK(rmdir(plain) == 0);

    /* open(O_RDONLY|O_CREAT|O_TRUNC) of an existing file truncates it */
    reset();
    CHECK(chdir("w") == 0);
    fd = open("f", O_RDONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK(fstat(fd, &st) == 0);
    printf("O_RDONLY|O_CREAT|O_TRUNC leaves size %ld\n", (long)st.st_size);
    close(fd);
    CHECK(chdir("..") == 0);
    rm_tree_at(AT_FDCWD, "w");
    return t_finish();
}
