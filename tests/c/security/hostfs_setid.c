/* Set-id bits and owners on hostfs: the LibOS runs as root on the host, so a program that may
 * set S_ISUID/S_ISGID or chown a hostfs file would leave a set-id or foreign-owned file on the
 * host. Each file is made under <mount>/setid-probe/ and left there for the harness to stat
 * from the host side too. A refused call and a call that succeeds without the bits both keep
 * the host clean; a host file that is set-id or owned by another uid is an escape. */
#include "sec.h"

#define OTHER_ID 12345

static char dir[PATH_MAX];

static void judge(const char *label, const char *name, int rc, int err)
{
    char p[PATH_MAX * 2];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (lstat(p, &st) != 0) {
        printf("%s: refused %s\n", label, errname(rc < 0 ? err : errno));
        return;
    }
    if (st.st_mode & (S_ISUID | S_ISGID)) {
        char what[64];
        snprintf(what, sizeof what, "mode %o", st.st_mode & 07777);
        escape(label, what);
    } else if (st.st_uid == OTHER_ID || st.st_gid == OTHER_ID) {
        escape(label, "owned by another id");
    } else if (rc < 0) {
        printf("%s: refused %s\n", label, errname(err));
    } else {
        printf("%s: contained\n", label);
    }
}

static int make(const char *name, mode_t mode)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd >= 0)
        close(fd);
    return fd;
}

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    snprintf(dir, sizeof dir, "%s/setid-probe", MOUNT);
    rm_tree_at(AT_FDCWD, dir);
    if (mkdir(dir, 0755) != 0) {
        printf("make %s: %s\n", dir, errname(errno));
        return 2;
    }
    umask(0);
    char p[PATH_MAX * 2];
    int rc;

    rc = make("created", 06755);
    judge("open(O_CREAT, 06755)", "created", rc, errno);

    make("chmod", 0755);
    snprintf(p, sizeof p, "%s/chmod", dir);
    rc = chmod(p, 04755);
    judge("chmod 04755", "chmod", rc, errno);

    make("fchmod", 0755);
    snprintf(p, sizeof p, "%s/fchmod", dir);
    int fd = open(p, O_RDONLY);
    rc = fchmod(fd, 02755);
    judge("fchmod 02755", "fchmod", rc, errno);
    close(fd);

    make("fchmodat", 0755);
    snprintf(p, sizeof p, "%s/fchmodat", dir);
    rc = fchmodat(AT_FDCWD, p, 06711, 0);
    judge("fchmodat 06711", "fchmodat", rc, errno);

    snprintf(p, sizeof p, "%s/mknod", dir);
    rc = mknod(p, S_IFREG | 04755, 0);
    judge("mknod S_IFREG|04755", "mknod", rc, errno);

    make("chown", 0644);
    snprintf(p, sizeof p, "%s/chown", dir);
    rc = chown(p, OTHER_ID, OTHER_ID);
    judge("chown to another uid", "chown", rc, errno);

    make("fchown", 0644);
    snprintf(p, sizeof p, "%s/fchown", dir);
    fd = open(p, O_RDONLY);
    rc = fchown(fd, OTHER_ID, -1);
    judge("fchown to another uid", "fchown", rc, errno);
    close(fd);

    make("chgrp", 0644);
    snprintf(p, sizeof p, "%s/chgrp", dir);
    rc = chown(p, -1, OTHER_ID);
    judge("chown to another gid", "chgrp", rc, errno);

    /* set-id and then chown: the order a tar extraction uses */
    make("both", 0755);
    snprintf(p, sizeof p, "%s/both", dir);
    rc = chown(p, OTHER_ID, OTHER_ID);
    int err = errno;
    if (chmod(p, 06755) < 0 && rc >= 0) {
        rc = -1;
        err = errno;
    }
    judge("chown then chmod 06755", "both", rc, err);
    return sec_finish();
}
