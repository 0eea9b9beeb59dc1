/* Legacy calls C libraries have no wrappers for, made through syscall(2): getdents (the old
 * linux_dirent layout, d_type in the record's last byte) and futimesat (utimes with a dirfd). */
#include "common.h"
#include <sys/syscall.h>
#include <sys/time.h>

struct linux_dirent {
    unsigned long d_ino;
    unsigned long d_off;
    unsigned short d_reclen;
    char d_name[];
};

static int cmp(const void *a, const void *b) { return strcmp(*(char **)a, *(char **)b); }

static char dtype(unsigned char t)
{
    return t == DT_DIR ? 'd' : t == DT_REG ? 'f' : t == DT_LNK ? 'l' : t == DT_FIFO ? 'p' : '?';
}

/* List dir with getdents, bufsize bytes per call, and print the sorted names with types. */
static void list(const char *dir, size_t bufsize)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    CHECK(fd >= 0);
    char *names[64];
    int n = 0, calls = 0, bad = 0;
    char buf[4096];
    for (;;) {
        long got = syscall(SYS_getdents, fd, buf, bufsize);
        if (got <= 0) {
            CHECK(got == 0);
            break;
        }
        calls++;
        for (long at = 0; at < got;) {
            struct linux_dirent *d = (struct linux_dirent *)(buf + at);
            if (d->d_reclen % 8 || d->d_reclen < 20 || strlen(d->d_name) + 20 > d->d_reclen)
                bad++;
            if (n < 64 && asprintf(&names[n], "%s:%c", d->d_name, dtype(buf[at + d->d_reclen - 1])) > 0)
                n++;
            at += d->d_reclen;
        }
    }
    printf("%s with %zu-byte buffers: %s calls, records well formed: %d\n", dir, bufsize,
           calls > 1 ? "several" : "one", bad == 0);
    qsort(names, n, sizeof names[0], cmp);
    for (int i = 0; i < n; i++) {
        printf(" %s", names[i]);
        free(names[i]);
    }
    printf("\n");
    /* rewinding with lseek lists the same again */
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    long again = syscall(SYS_getdents, fd, buf, sizeof buf);
    CHECK(again > 0);
    close(fd);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    OK("mkdir d", mkdir("d", 0755));
    OK("mkdir d/sub", mkdir("d/sub", 0755));
    CHECK(write_file("d/file", "x") == 0);
    CHECK(write_file("d/a-rather-longer-name-of-a-file", "y") == 0);
    OK("symlink", symlink("file", "d/link"));
    OK("mkfifo", mkfifo("d/fifo", 0644));
    list("d", sizeof(char[4096]));
    list("d", 64);

    char small[16];
    int fd = open("d", O_RDONLY | O_DIRECTORY);
    ERR("getdents into a buffer too small", syscall(SYS_getdents, fd, small, sizeof small), EINVAL);
    close(fd);
    fd = open("d/file", O_RDONLY);
    ERR("getdents of a file", syscall(SYS_getdents, fd, small, sizeof small), ENOTDIR);
    close(fd);
    ERR("getdents of a bad fd", syscall(SYS_getdents, 999, small, sizeof small), EBADF);

    /* futimesat */
    int dfd = open("d", O_RDONLY | O_DIRECTORY);
    struct timeval tv[2] = {{1000000000, 250000}, {1234567890, 999999}};
    OK("futimesat relative to a dirfd", syscall(SYS_futimesat, dfd, "file", tv));
    struct stat st;
    CHECK(stat("d/file", &st) == 0);
    printf("atime %ld.%09ld mtime %ld.%09ld\n", (long)st.st_atim.tv_sec, st.st_atim.tv_nsec,
           (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    struct timeval tv2[2] = {{42, 0}, {43, 1}};
    OK("futimesat AT_FDCWD", syscall(SYS_futimesat, AT_FDCWD, "d/sub", tv2));
    CHECK(stat("d/sub", &st) == 0);
    printf("sub atime %ld mtime %ld.%09ld\n", (long)st.st_atim.tv_sec, (long)st.st_mtim.tv_sec,
           st.st_mtim.tv_nsec);
    int ffd = open("d/file", O_RDONLY);
    struct timeval tv3[2] = {{7, 0}, {8, 0}};
    OK("futimesat of the fd itself (NULL path)", syscall(SYS_futimesat, ffd, NULL, tv3));
    CHECK(fstat(ffd, &st) == 0);
    printf("file mtime %ld\n", (long)st.st_mtim.tv_sec);
    close(ffd);
    struct timeval before;
    gettimeofday(&before, NULL);
    OK("futimesat NULL times (now)", syscall(SYS_futimesat, dfd, "file", NULL));
    CHECK(stat("d/file", &st) == 0);
    printf("mtime is now: %d\n", st.st_mtim.tv_sec >= before.tv_sec - 1 && st.st_mtim.tv_sec <= before.tv_sec + 60);
    struct timeval bad[2] = {{1, 1000000}, {1, 0}};
    ERR("futimesat usec out of range", syscall(SYS_futimesat, dfd, "file", bad), EINVAL);
    struct timeval neg[2] = {{1, 0}, {1, -1}};
    ERR("futimesat negative usec", syscall(SYS_futimesat, dfd, "file", neg), EINVAL);
    ERR("futimesat missing file", syscall(SYS_futimesat, dfd, "nope", tv), ENOENT);
    ERR("futimesat bad dirfd", syscall(SYS_futimesat, 999, "file", tv), EBADF);
    ERR("futimesat file as dirfd", syscall(SYS_futimesat, open("d/file", O_RDONLY), "x", tv), ENOTDIR);
    close(dfd);
    return t_finish();
}
