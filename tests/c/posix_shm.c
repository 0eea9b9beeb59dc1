/* POSIX shared memory: shm_open (O_CREAT, O_EXCL, EEXIST, ENOENT), ftruncate, mmap shared
 * between a parent and a child (writes seen both ways), fstat, a second shm_open of the same
 * name seeing the same bytes, the object living on after shm_unlink while mapped. */
#include "common.h"
#include <sys/mman.h>

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    char name[64];
    snprintf(name, sizeof name, "/occlum-test-shm-%d", (int)getpid());
    shm_unlink(name);

    ERR("shm_open missing", shm_open(name, O_RDWR, 0600), ENOENT);
    int fd = OK("shm_open O_CREAT|O_EXCL", shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600));
    ERR("shm_open O_EXCL again", shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600), EEXIST);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    printf("new object: size %ld mode %o type %s\n", (long)st.st_size, st.st_mode & 0777, ftype(st.st_mode));
    printf("cloexec: %d\n", (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    OK("ftruncate 8192", ftruncate(fd, 8192));
    CHECK(fstat(fd, &st) == 0);
    printf("size after ftruncate: %ld\n", (long)st.st_size);

    char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(m != MAP_FAILED);
    printf("zero-filled: %d\n", m[0] == 0 && m[8191] == 0);
    strcpy(m, "from the parent");

    /* a child writes through its own mapping of a fresh shm_open */
    int p[2], q[2]; /* child to parent, parent to child */
    CHECK(pipe(p) == 0 && pipe(q) == 0);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        int f = shm_open(name, O_RDWR, 0);
        char *cm = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
        if (f < 0 || cm == MAP_FAILED)
            _exit(1);
        int saw = strcmp(cm, "from the parent") == 0;
        strcpy(cm + 4096, "from the child");
        write(p[1], "d", 1);
        char b;
        read(q[0], &b, 1); /* wait for the parent's second write */
        _exit(saw && strcmp(cm + 100, "second") == 0 ? 0 : 2);
    }
    char b;
    CHECK(read(p[0], &b, 1) == 1);
    printf("parent sees the child's write: %s\n", m + 4096);
    strcpy(m + 100, "second");
    CHECK(write(q[1], "g", 1) == 1);
    printf("child saw both of ours: %d\n", wait_child(c));

    /* read() on the object sees the mapping's bytes */
    char buf[32] = {0};
    CHECK(pread(fd, buf, 15, 0) == 15);
    printf("pread: %s\n", buf);

    /* read-only open and mapping */
    int ro = OK("shm_open O_RDONLY", shm_open(name, O_RDONLY, 0));
    char *rm = mmap(NULL, 4096, PROT_READ, MAP_SHARED, ro, 0);
    printf("read-only mapping sees: %s\n", rm != MAP_FAILED ? rm : "(failed)");
    printf("writable mapping of a read-only fd: %s\n",
           mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0) == MAP_FAILED ? errname(errno) : "ok");
    close(ro);

    /* unlink: the name goes, the mapping stays */
    OK("shm_unlink", shm_unlink(name));
    ERR("shm_open after unlink", shm_open(name, O_RDWR, 0), ENOENT);
    ERR("shm_unlink again", shm_unlink(name), ENOENT);
    strcpy(m, "still mapped");
    printf("after unlink: %s\n", m);
    munmap(m, 8192);
    close(fd);

    /* O_TRUNC empties an existing object */
    fd = shm_open(name, O_RDWR | O_CREAT, 0600);
    CHECK(ftruncate(fd, 100) == 0);
    close(fd);
    fd = shm_open(name, O_RDWR | O_TRUNC, 0);
    CHECK(fstat(fd, &st) == 0);
    printf("O_TRUNC: size %ld\n", (long)st.st_size);
    close(fd);
    shm_unlink(name);
    return t_finish();
}
