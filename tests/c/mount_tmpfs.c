/* mount(2) of tmpfs and ramfs at run time: the statfs type, the root directory's mode and
 * owner from mode=/uid=/gid=, size= enforced (ENOSPC at the limit, for writes and fallocate),
 * the /proc/mounts line with its options, and umount.
 *
 * Natively the test mounts a real tmpfs in a private mount namespace of its own; inside the
 * LibOS unshare is refused and the mount is the LibOS's own: neither prints anything. */
#include "common.h"
#include <sched.h>
#include <sys/mount.h>
#include <sys/statfs.h>

#define TMPFS_MAGIC 0x01021994
#define RAMFS_MAGIC 0x858458f6

/* The /proc/mounts line of directory "mnt", without its mount point (which differs between
 * natively and inside) and without the inode32/inode64 option some kernels add. */
static void show_mounts_line(void)
{
    char target[PATH_MAX], want[PATH_MAX + 2], line[1024];
    if (!realpath("mnt", target)) {
        printf("realpath: %s\n", errname(errno));
        return;
    }
    snprintf(want, sizeof want, " %s ", target);
    FILE *f = fopen("/proc/self/mounts", "r");
    if (!f) {
        printf("mounts: %s\n", errname(errno));
        return;
    }
    char found[1024] = "";
    while (fgets(line, sizeof line, f))
        if (strstr(line, want))
            snprintf(found, sizeof found, "%s", line); /* the last: the topmost mount */
    fclose(f);
    if (!found[0]) {
        printf("mounts line: none\n");
        return;
    }
    char src[256], dir[PATH_MAX], type[64], opts[512];
    if (sscanf(found, "%255s %4095s %63s %511s", src, dir, type, opts) != 4) {
        printf("mounts line: malformed\n");
        return;
    }
    printf("mounts line: %s %s ", src, type);
    const char *sep = "";
    for (char *o = strtok(opts, ","); o; o = strtok(NULL, ",")) {
        if (strncmp(o, "inode", 5) == 0)
            continue;
        printf("%s%s", sep, o);
        sep = ",";
    }
    printf("\n");
}

static void show_fs(void)
{
    struct statfs sf;
    struct stat st;
    if (statfs("mnt", &sf) != 0 || stat("mnt", &st) != 0) {
        printf("statfs: %s\n", errname(errno));
        return;
    }
    const char *type = sf.f_type == TMPFS_MAGIC ? "tmpfs" : sf.f_type == RAMFS_MAGIC ? "ramfs"
                                                                                    : "other";
    printf("type %s, root mode %o, uid %u, gid %u\n", type, (unsigned)st.st_mode,
           (unsigned)st.st_uid, (unsigned)st.st_gid);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    if (unshare(CLONE_NEWNS) == 0)
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    OK("mkdir mnt", mkdir("mnt", 0755));

    /* a size-limited tmpfs, NULL source */
    OK("mount tmpfs", mount(NULL, "mnt", "tmpfs", 0, "size=64k,mode=750"));
    show_fs();
    show_mounts_line();
    struct statfs sf;
    OK("statfs", statfs("mnt", &sf));
    printf("size %ldk, free %ldk\n", (long)(sf.f_blocks * sf.f_bsize / 1024),
           (long)(sf.f_bfree * sf.f_bsize / 1024));
    int fd = OK("create", open("mnt/f", O_RDWR | O_CREAT, 0600));
    char buf[4096];
    memset(buf, 'x', sizeof buf);
    long total = 0;
    ssize_t n;
    while ((n = write(fd, buf, sizeof buf)) > 0 && total < 1 << 20)
        total += n;
    printf("write stopped by %s, within the size: %d\n", n < 0 ? errname(errno) : "nothing",
           total <= 64 * 1024 && total >= 56 * 1024);
    OK("statfs full", statfs("mnt", &sf));
    printf("free when full %ldk\n", (long)(sf.f_bfree * sf.f_bsize / 1024));
    ERR("fallocate past the size", fallocate(fd, 0, 0, 128 * 1024), ENOSPC);
    OK("truncate", ftruncate(fd, 0));
    OK("fallocate within the size", fallocate(fd, 0, 0, 32 * 1024));
    close(fd);
    OK("unlink", unlink("mnt/f"));
    OK("statfs after unlink", statfs("mnt", &sf));
    printf("free again %ldk\n", (long)(sf.f_bfree * sf.f_bsize / 1024));
    OK("umount", umount("mnt"));
    ERR("file gone with the mount", access("mnt/f", F_OK), ENOENT);
    struct stat st;
    OK("stat mount point", stat("mnt", &st));
    printf("mount point mode %o\n", (unsigned)st.st_mode);

    /* owner options, a named source, read-only */
    OK("mount tmpfs uid/gid", mount("scratchfs", "mnt", "tmpfs", MS_RDONLY,
                                    "uid=1000,gid=1001,mode=1777"));
    show_fs();
    show_mounts_line();
    ERR("create on read-only", open("mnt/g", O_RDWR | O_CREAT, 0600), EROFS);
    OK("umount", umount2("mnt", 0));

    /* default tmpfs: no size shown */
    OK("mount default tmpfs", mount("tmpfs", "mnt", "tmpfs", 0, NULL));
    show_fs();
    show_mounts_line();
    OK("umount", umount("mnt"));

    /* nr_inodes: the root, each directory, file, symlink and further hard link take one */
    OK("mount tmpfs nr_inodes", mount("tmpfs", "mnt", "tmpfs", 0, "nr_inodes=4"));
    show_mounts_line();
    OK("statfs", statfs("mnt", &sf));
    printf("inodes %ld, free %ld\n", (long)sf.f_files, (long)sf.f_ffree);
    OK("file", close(open("mnt/f1", O_CREAT | O_RDWR, 0600)));
    OK("directory", mkdir("mnt/d2", 0700));
    OK("symlink", symlink("f1", "mnt/s3"));
    ERR("a fifth inode", open("mnt/f4", O_CREAT | O_RDWR, 0600), ENOSPC);
    ERR("an unnamed one", open("mnt", O_TMPFILE | O_RDWR, 0600), ENOSPC);
    ERR("a directory", mkdir("mnt/d4", 0700), ENOSPC);
    OK("statfs", statfs("mnt", &sf));
    printf("inodes %ld, free %ld\n", (long)sf.f_files, (long)sf.f_ffree);
    OK("rmdir", rmdir("mnt/d2"));
    OK("a file again", close(open("mnt/f4", O_CREAT | O_RDWR, 0600)));
    ERR("a further name", link("mnt/f4", "mnt/f5"), ENOSPC);
    OK("unlink", unlink("mnt/s3"));
    OK("link", link("mnt/f4", "mnt/f5"));
    OK("unlink a name", unlink("mnt/f5"));
    fd = OK("tmpfile", open("mnt", O_TMPFILE | O_RDWR, 0600));
    close(fd);
    OK("umount", umount("mnt"));

    ERR("bad size", mount("tmpfs", "mnt", "tmpfs", 0, "size=lots"), EINVAL);
    ERR("bad nr_inodes", mount("tmpfs", "mnt", "tmpfs", 0, "nr_inodes=many"), EINVAL);
    ERR("unknown option", mount("tmpfs", "mnt", "tmpfs", 0, "colour=blue"), EINVAL);

    /* ramfs: its own magic, mode= only, default root mode 0755 */
    OK("mount ramfs", mount("ramfs", "mnt", "ramfs", 0, "mode=700"));
    show_fs();
    show_mounts_line();
    OK("umount", umount("mnt"));
    OK("mount ramfs default", mount("ramfs", "mnt", "ramfs", 0, NULL));
    show_fs();
    show_mounts_line();
    OK("umount", umount("mnt"));

    OK("rmdir mnt", rmdir("mnt"));
    if (t_failures)
        return 1;
    printf("PASS\n");
    return 0;
}
