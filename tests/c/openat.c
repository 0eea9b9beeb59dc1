/* openat with dirfds: relative to dirfd, AT_FDCWD, absolute paths, O_PATH, AT_EMPTY_PATH, dup. */
#include "common.h"

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    char cwd[PATH_MAX], abs[PATH_MAX + 8];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(mkdir("d", 0755) == 0 && mkdir("d/e", 0755) == 0);
    CHECK(write_file("d/e/f", "deep") == 0);
    CHECK(write_file("top", "top") == 0);

    int d = OK("open dir", open("d", O_RDONLY | O_DIRECTORY));
    int fd = OK("openat relative", openat(d, "e/f", O_RDONLY));
    char buf[32] = {0};
    CHECK(read(fd, buf, sizeof buf - 1) == 4);
    printf("read: %s\n", buf);
    close(fd);
    fd = OK("openat dotdot", openat(d, "../top", O_RDONLY));
    close(fd);
    snprintf(abs, sizeof abs, "%s/top", cwd);
    fd = OK("openat absolute ignores dirfd", openat(d, abs, O_RDONLY));
    close(fd);
    ERR("openat bad dirfd", openat(999, "x", O_RDONLY), EBADF);
    fd = OK("openat absolute with bad dirfd", openat(999, abs, O_RDONLY));
    close(fd);
    int f = open("top", O_RDONLY);
    ERR("openat file as dirfd", openat(f, "x", O_RDONLY), ENOTDIR);
    close(f);

    fd = OK("openat creat", openat(d, "new", O_WRONLY | O_CREAT | O_EXCL, 0600));
    close(fd);
    CHECK(access("d/new", F_OK) == 0);

    /* the dirfd keeps naming the directory after it is renamed */
    CHECK(rename("d", "renamed") == 0);
    fd = OK("openat after rename of dirfd", openat(d, "e/f", O_RDONLY));
    close(fd);

    int p = OK("O_PATH", open("renamed/e/f", O_PATH));
    ERR("read O_PATH", read(p, buf, 1), EBADF);
    struct stat st;
    OK("fstat O_PATH", fstat(p, &st));
    printf("O_PATH size: %ld\n", (long)st.st_size);
    OK("fstatat AT_EMPTY_PATH", fstatat(p, "", &st, AT_EMPTY_PATH));
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", p);
    fd = OK("reopen O_PATH via /proc/self/fd", open(proc, O_RDONLY));
    memset(buf, 0, sizeof buf);
    CHECK(read(fd, buf, sizeof buf - 1) == 4);
    printf("reopened: %s\n", buf);
    close(fd);
    close(p);

    /* two opens have independent offsets; dup shares one */
    int a = open("top", O_RDONLY), b = open("top", O_RDONLY);
    CHECK(read(a, buf, 2) == 2);
    printf("independent offset: %ld\n", (long)lseek(b, 0, SEEK_CUR));
    int c = dup(a);
    printf("dup shares offset: %ld\n", (long)lseek(c, 0, SEEK_CUR));
    int fl = fcntl(c, F_GETFD);
    printf("dup clears cloexec: %d\n", (fl & FD_CLOEXEC) == 0);
    int e = fcntl(a, F_DUPFD_CLOEXEC, 50);
    printf("F_DUPFD_CLOEXEC >= 50: %d cloexec: %d\n", e >= 50, (fcntl(e, F_GETFD) & FD_CLOEXEC) != 0);
    int g = OK("O_CLOEXEC", open("top", O_RDONLY | O_CLOEXEC));
    printf("cloexec set: %d\n", (fcntl(g, F_GETFD) & FD_CLOEXEC) != 0);
    printf("status flags: %d\n", fcntl(a, F_GETFL) & O_ACCMODE);
    OK("dup2 onto itself", dup2(a, a));
    ERR("dup3 onto itself", dup3(a, a, 0), EINVAL);
    close(a), close(b), close(c), close(e), close(g);
    close(d);
    return t_finish();
}
