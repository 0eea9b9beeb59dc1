/* mmap of files: MAP_SHARED coherence between two descriptors and with write(); MAP_PRIVATE. */
#include "common.h"
#include <sys/mman.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    long pg = sysconf(_SC_PAGESIZE);
    int fd1 = open("f", O_RDWR | O_CREAT, 0644);
    CHECK(ftruncate(fd1, 2 * pg) == 0);
    int fd2 = open("f", O_RDWR);
    char *m1 = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd1, 0);
    char *m2 = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
    CHECK(m1 != MAP_FAILED && m2 != MAP_FAILED);
    strcpy(m1, "written through map 1");
    printf("map 2 sees: %s\n", m2);
    strcpy(m2 + pg, "second page via map 2");
    printf("map 1 sees: %s\n", m1 + pg);
    char buf[64] = {0};
    CHECK(pread(fd2, buf, sizeof buf - 1, 0) > 0);
    printf("read() sees: %s\n", buf);
    CHECK(pwrite(fd1, "WRITE", 5, 0) == 5);
    printf("map after write(): %.21s\n", m2);

    char *pv = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd1, 0);
    CHECK(pv != MAP_FAILED);
    pv[0] = 'p';
    printf("private change hidden from shared: %c\n", m1[0]);
    OK("msync", msync(m1, 2 * pg, MS_SYNC));

    /* a child's writes through an inherited shared map are seen by the parent */
    pid_t c = fork();
    if (c == 0) {
        strcpy(m1 + 100, "from child");
        _exit(0);
    }
    int status;
    CHECK(waitpid(c, &status, 0) == c && WIFEXITED(status));
    printf("parent sees child's write: %s\n", m2 + 100);

    /* a fresh open and map after munmap of the others sees the data */
    CHECK(munmap(m1, 2 * pg) == 0 && munmap(m2, 2 * pg) == 0 && munmap(pv, pg) == 0);
    close(fd1);
    close(fd2);
    int fd3 = open("f", O_RDONLY);
    char *m3 = mmap(NULL, pg, PROT_READ, MAP_SHARED, fd3, 0);
    CHECK(m3 != MAP_FAILED);
    printf("reopened: %.21s\n", m3);
    ERR("PROT_WRITE shared on read-only fd", (long)(mmap(NULL, pg, PROT_WRITE, MAP_SHARED, fd3, 0) == MAP_FAILED ? -1 : 0), EACCES);
    munmap(m3, pg);
    close(fd3);
    ERR("mmap bad fd", (long)(mmap(NULL, pg, PROT_READ, MAP_SHARED, 999, 0) == MAP_FAILED ? -1 : 0), EBADF);
    CHECK(mkdir("d", 0755) == 0);
    int dfd = open("d", O_RDONLY);
    ERR("mmap a directory", (long)(mmap(NULL, pg, PROT_READ, MAP_PRIVATE, dfd, 0) == MAP_FAILED ? -1 : 0), ENODEV);
    close(dfd);
    return t_finish();
}
