/* mount/umount must not touch the host: refused, or a LibOS mount that shows no host file. */
#include "sec.h"
#include <sys/mount.h>

static char dir1[] = "/tmp/sec-mount-a", dir2[] = "/tmp/sec-mount-b";

/* A mount the LibOS grants is its own file system: empty (tmpfs), or the LibOS's procfs, whose
 * self/root is the LibOS root. Either way the host secret must stay out of reach. */
static void mounted_fs_shows_no_host(const char *label, const char *type)
{
    if (mount("none", dir1, type, 0, NULL) != 0) {
        printf("%s: refused %s\n", label, errname(errno));
        return;
    }
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/self/root%s", dir1, SECRET);
    try_open(label, AT_FDCWD, p);
    snprintf(p, sizeof p, "%s%s", dir1, SECRET);
    int fd = open(p, O_RDONLY);
    if (fd >= 0)
        judge_fd(label, fd);
    umount2(dir1, 0);
}
static long m_hostfs(void) { return mount("/", dir1, "hostfs", 0, NULL); }
static long m_umount_root(void) { return umount2("/", MNT_DETACH); }
static long m_move(void) { return mount("/host", dir1, NULL, MS_MOVE, NULL); }
static long m_new_api(void) { return syscall(428 /* open_tree */, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */); }
static long m_fsopen(void) { return syscall(430 /* fsopen */, "tmpfs", 0); }
static long m_pivot(void) { return syscall(SYS_pivot_root, dir1, dir2); }

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    mkdir(dir1, 0755);
    mkdir(dir2, 0755);
    /* a bind mount of "/" must show the LibOS root, never the host's */
    if (mount("/", dir2, NULL, MS_BIND | MS_REC, NULL) == 0) {
        char p[PATH_MAX * 2];
        snprintf(p, sizeof p, "%s%s", dir2, SECRET);
        try_open("bind mount of /, then secret", AT_FDCWD, p);
        umount2(dir2, MNT_DETACH);
    } else {
        printf("bind mount of /: refused %s\n", errname(errno));
    }
    mounted_fs_shows_no_host("mount tmpfs", "tmpfs");
    mounted_fs_shows_no_host("mount proc", "proc");
    PROBE("mount hostfs", m_hostfs);
    PROBE("umount2(/)", m_umount_root);
    PROBE("mount MS_MOVE", m_move);
    PROBE("open_tree(/, CLONE)", m_new_api);
    PROBE("fsopen(tmpfs)", m_fsopen);
    PROBE("pivot_root", m_pivot);
    return sec_finish();
}
