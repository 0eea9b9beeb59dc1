/* stat, lstat, fstat, fstatat(AT_EMPTY_PATH) and statx agree on every field, across hard links,
 * after writes through a descriptor, chmod, utimensat and truncation, on every file system.
 *
 * Programs compare them (fish spins forever when fstat and stat of a file disagree on
 * st_ctime). Each case prints only whether the views agree; the file systems are the scratch
 * directory (ramfs inside the LibOS), /var/tmp (the union root over SEFS and the image),
 * /dev/shm, the program's own file (the read-only image), /dev/null and /proc; /host (hostfs)
 * only exists inside, so it is checked without printing.
 */
#include "common.h"
#include <sys/syscall.h>
#include <sys/sysmacros.h>

static int same_stat(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_mode == b->st_mode &&
           a->st_nlink == b->st_nlink && a->st_uid == b->st_uid && a->st_gid == b->st_gid &&
           a->st_rdev == b->st_rdev && a->st_size == b->st_size &&
           a->st_blksize == b->st_blksize && a->st_blocks == b->st_blocks &&
           a->st_atim.tv_sec == b->st_atim.tv_sec && a->st_atim.tv_nsec == b->st_atim.tv_nsec &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static int statx_matches(const struct statx *x, const struct stat *s)
{
    return makedev(x->stx_dev_major, x->stx_dev_minor) == s->st_dev && x->stx_ino == s->st_ino &&
           x->stx_mode == (s->st_mode & 0xffff) && x->stx_nlink == s->st_nlink &&
           x->stx_uid == s->st_uid && x->stx_gid == s->st_gid &&
           makedev(x->stx_rdev_major, x->stx_rdev_minor) == s->st_rdev &&
           (long long)x->stx_size == (long long)s->st_size &&
           (long long)x->stx_blocks == (long long)s->st_blocks &&
           x->stx_blksize == (unsigned)s->st_blksize &&
           x->stx_atime.tv_sec == s->st_atim.tv_sec &&
           x->stx_atime.tv_nsec == (unsigned)s->st_atim.tv_nsec &&
           x->stx_mtime.tv_sec == s->st_mtim.tv_sec &&
           x->stx_mtime.tv_nsec == (unsigned)s->st_mtim.tv_nsec &&
           x->stx_ctime.tv_sec == s->st_ctim.tv_sec &&
           x->stx_ctime.tv_nsec == (unsigned)s->st_ctim.tv_nsec;
}

/* Every view of `path` (and of `fd`, when >= 0) agrees; `follow` says whether the path's final
 * symlink is followed. Returns the number of disagreements, naming them when `loud`. */
static int views_differ(const char *path, int fd, int follow, int loud)
{
    struct stat ref, s;
    struct statx x;
    int bad = 0;
    int nf = follow ? 0 : AT_SYMLINK_NOFOLLOW;
    if (fstatat(AT_FDCWD, path, &ref, nf) != 0) {
        printf("  %s: fstatat: %s\n", path, errname(errno));
        return 1;
    }
#define VIEW(name, ok)                                                                  \
    do {                                                                                \
        if (!(ok)) {                                                                    \
            bad++;                                                                      \
            if (loud)                                                                   \
                printf("  %s: %s differs\n", path, name);                              \
        }                                                                               \
    } while (0)
    if (follow)
        VIEW("stat", stat(path, &s) == 0 && same_stat(&s, &ref));
    else
        VIEW("lstat", lstat(path, &s) == 0 && same_stat(&s, &ref));
    VIEW("statx", statx(AT_FDCWD, path, nf, STATX_BASIC_STATS, &x) == 0 && statx_matches(&x, &ref));
    if (fd >= 0) {
        VIEW("fstat", fstat(fd, &s) == 0 && same_stat(&s, &ref));
        VIEW("fstatat(AT_EMPTY_PATH)",
             fstatat(fd, "", &s, AT_EMPTY_PATH) == 0 && same_stat(&s, &ref));
        VIEW("statx(AT_EMPTY_PATH)",
             statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &x) == 0 && statx_matches(&x, &ref));
    }
#undef VIEW
    return bad;
}

static void agree(const char *label, const char *path, int fd, int follow)
{
    int bad = views_differ(path, fd, follow, 1);
    printf("%s: %s\n", label, bad ? "DISAGREE" : "agree");
    CHECK(bad == 0);
}

static void pause_tick(void)
{
    /* past the coarse clock's tick, so a later change gets a later time */
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* The cases of one writable directory. */
static void writable_dir(const char *tag, const char *dir)
{
    char f[PATH_MAX], g[PATH_MAX], l[PATH_MAX], d[PATH_MAX], lab[128];
    snprintf(f, sizeof f, "%s/f", dir);
    snprintf(g, sizeof g, "%s/g", dir);
    snprintf(l, sizeof l, "%s/l", dir);
    snprintf(d, sizeof d, "%s/d", dir);
#define L(what) (snprintf(lab, sizeof lab, "%s %s", tag, what), lab)

    int fd = open(f, O_RDWR | O_CREAT | O_EXCL, 0644);
    CHECK(fd >= 0);
    agree(L("new file"), f, fd, 1);
    pause_tick();
    CHECK(write(fd, "hello\n", 6) == 6);
    agree(L("after a write through the descriptor"), f, fd, 1);
    pause_tick();
    CHECK(pwrite(fd, "x", 1, 10000) == 1);
    agree(L("after a write past the end"), f, fd, 1);
    pause_tick();
    CHECK(link(f, g) == 0);
    agree(L("after link (first name)"), f, fd, 1);
    agree(L("after link (second name)"), g, fd, 1);
    pause_tick();
    CHECK(fchmod(fd, 0600) == 0);
    agree(L("after fchmod"), g, fd, 1);
    pause_tick();
    CHECK(chmod(f, 0640) == 0);
    agree(L("after chmod"), f, fd, 1);
    pause_tick();
    struct timespec ts[2] = {{1000000000, 123456789}, {1200000000, 987654321}};
    CHECK(utimensat(AT_FDCWD, f, ts, 0) == 0);
    agree(L("after utimensat"), f, fd, 1);
    pause_tick();
    struct timespec now[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
    CHECK(futimens(fd, now) == 0);
    agree(L("after futimens"), g, fd, 1);
    pause_tick();
    CHECK(ftruncate(fd, 3) == 0);
    agree(L("after ftruncate"), f, fd, 1);
    pause_tick();
    CHECK(truncate(g, 7) == 0);
    agree(L("after truncate"), f, fd, 1);
    pause_tick();
    CHECK(write(fd, "more", 4) == 4);
    agree(L("after another write"), g, fd, 1);

    int ro = open(f, O_RDONLY);
    CHECK(ro >= 0);
    agree(L("second descriptor"), f, ro, 1);
    int op = open(f, O_PATH);
    CHECK(op >= 0);
    agree(L("O_PATH descriptor"), f, op, 1);
    close(op);

    CHECK(symlink("f", l) == 0);
    int lp = open(l, O_PATH | O_NOFOLLOW);
    CHECK(lp >= 0);
    agree(L("symlink"), l, lp, 0);
    agree(L("symlink followed"), l, fd, 1);
    close(lp);

    CHECK(mkdir(d, 0755) == 0);
    int dfd = open(d, O_RDONLY | O_DIRECTORY);
    CHECK(dfd >= 0);
    agree(L("new directory"), d, dfd, 1);
    pause_tick();
    char sub[PATH_MAX + 16];
    snprintf(sub, sizeof sub, "%s/sub", d);
    CHECK(mkdir(sub, 0700) == 0);
    agree(L("directory after mkdir in it"), d, dfd, 1);
    CHECK(rmdir(sub) == 0);
    close(dfd);

    /* no name left: the descriptors still agree with each other */
    CHECK(unlink(f) == 0 && unlink(g) == 0);
    struct stat a, b;
    CHECK(fstat(fd, &a) == 0 && fstat(ro, &b) == 0);
    printf("%s: %s\n", L("unlinked file, two descriptors"),
           same_stat(&a, &b) && a.st_nlink == 0 && a.st_size == 10 ? "agree" : "DISAGREE");
    CHECK(same_stat(&a, &b) && a.st_nlink == 0 && a.st_size == 10);
    close(fd);
    close(ro);
    unlink(l);
    rmdir(d);
#undef L
}

int main(int argc, char **argv)
{
    char prog[PATH_MAX];
    CHECK(realpath(self_exe(), prog) != NULL);
    const char *scratch = scratch_enter(argc, argv);
    char dir[PATH_MAX - 16];

    snprintf(dir, sizeof dir, "%s/w", scratch);
    mkdir_p(dir);
    writable_dir("scratch", dir);

    /* inside the LibOS, /var/tmp is on the union root (SEFS over the image) */
    snprintf(dir, sizeof dir, "/var/tmp/stat-agree-%d", (int)getpid());
    rm_tree_at(AT_FDCWD, dir);
    mkdir_p(dir);
    writable_dir("root", dir);
    rm_tree_at(AT_FDCWD, dir);

    snprintf(dir, sizeof dir, "/dev/shm/stat-agree-%d", (int)getpid());
    mkdir_p(dir);
    writable_dir("shm", dir);
    rm_tree_at(AT_FDCWD, dir);

    /* the program itself: the read-only image inside */
    int self = open(prog, O_RDONLY);
    CHECK(self >= 0);
    agree("program file", prog, self, 1);
    close(self);
    int root = open("/", O_RDONLY | O_DIRECTORY);
    agree("root directory", "/", root, 1);
    close(root);

    int null = open("/dev/null", O_RDWR);
    agree("/dev/null", "/dev/null", null, 1);
    close(null);

    int ps = open("/proc/self/status", O_RDONLY);
    agree("/proc/self/status", "/proc/self/status", ps, 1);
    close(ps);

    /* hostfs, inside only: must agree, prints nothing */
    struct stat hs;
    if (stat("/host", &hs) == 0 && S_ISDIR(hs.st_mode)) {
        int h = open("/host/hello.txt", O_RDONLY);
        if (h >= 0) {
            CHECK(views_differ("/host/hello.txt", h, 1, 1) == 0);
            close(h);
        }
        snprintf(dir, sizeof dir, "/host/stat-agree-%d", (int)getpid());
        if (mkdir(dir, 0755) == 0) {
            char f[PATH_MAX + 16];
            snprintf(f, sizeof f, "%s/f", dir);
            int fd = open(f, O_RDWR | O_CREAT, 0644);
            CHECK(fd >= 0);
            CHECK(views_differ(f, fd, 1, 1) == 0);
            pause_tick();
            CHECK(write(fd, "abc", 3) == 3 && fchmod(fd, 0600) == 0);
            CHECK(views_differ(f, fd, 1, 1) == 0);
            close(fd);
            rm_tree_at(AT_FDCWD, dir);
        }
    }
    return t_finish();
}
