/* mount(2)/umount2(2) inside the LibOS: ramfs, SEFS (persisting), and what is refused. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *err(long r) { return r == 0 ? "ok" : strerror(errno); }

static void put(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        write(fd, text, strlen(text));
        close(fd);
    }
}

static void show(const char *path)
{
    char buf[64] = {0};
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("%s: %s\n", path, strerror(errno));
        return;
    }
    read(fd, buf, sizeof buf - 1);
    close(fd);
    printf("%s: %s", path, buf);
}

int main(int argc, char **argv)
{
    mkdir("/tmp/mnt", 0755);
    if (argc > 1 && strcmp(argv[1], "again") == 0) {
        printf("mount sefs vol1 again: %s\n", err(mount("vol1", "/tmp/mnt", "sefs", 0, NULL)));
        show("/tmp/mnt/kept");
        printf("umount: %s\n", err(umount2("/tmp/mnt", 0)));
        return 0;
    }
    printf("mount ramfs: %s\n", err(mount("none", "/tmp/mnt", "ramfs", 0, NULL)));
    put("/tmp/mnt/x", "in ramfs\n");
    show("/tmp/mnt/x");
    printf("umount: %s\n", err(umount2("/tmp/mnt", 0)));
    show("/tmp/mnt/x");
    printf("mount sefs vol1: %s\n", err(mount("vol1", "/tmp/mnt", "sefs", 0, NULL)));
    put("/tmp/mnt/kept", "in sefs\n");
    printf("umount: %s\n", err(umount2("/tmp/mnt", 0)));
    printf("mount hostfs: %s\n", err(mount("/", "/tmp/mnt", "hostfs", 0, NULL)));
    printf("mount sefs outside run/mount: %s\n", err(mount("../../etc", "/tmp/mnt", "sefs", 0, NULL)));
    printf("remount: %s\n", err(mount("none", "/tmp", "ramfs", MS_REMOUNT, NULL)));
    printf("unknown type: %s\n", err(mount("none", "/tmp/mnt", "ext9", 0, NULL)));
    printf("umount /: %s\n", err(umount2("/", 0)));
    printf("umount non-mount: %s\n", err(umount2("/tmp/mnt", 0)));
    return 0;
}
