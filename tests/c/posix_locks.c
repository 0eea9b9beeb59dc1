/* POSIX record locks with fcntl between processes: F_SETLK byte ranges (shared and exclusive,
 * adjacent and overlapping), F_GETLK reporting the holder, splitting a range by unlocking its
 * middle, all of a process's locks released by closing any fd of the file, F_SETLKW waiting,
 * EDEADLK, and open-file-description locks (F_OFD_SETLK/F_OFD_GETLK). */
#include "common.h"
#include <signal.h>

#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#define F_OFD_SETLK 37
#define F_OFD_SETLKW 38
#endif

static int lk(int fd, int cmd, short type, off_t start, off_t len)
{
    struct flock f = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &f);
}

static const char *type_name(short t)
{
    return t == F_RDLCK ? "F_RDLCK" : t == F_WRLCK ? "F_WRLCK" : t == F_UNLCK ? "F_UNLCK" : "?";
}

static pid_t parent;

/* What another process sees for [start, start+len) as type: "free" or "<type> [s,+l) by parent". */
static void probe(const char *label, short type, off_t start, off_t len)
{
    int p[2];
    CHECK(pipe(p) == 0);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        int fd = open("locked", O_RDWR);
        struct flock f = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
        char out[128];
        if (fcntl(fd, F_GETLK, &f) != 0)
            snprintf(out, sizeof out, "F_GETLK %s", errname(errno));
        else if (f.l_type == F_UNLCK)
            snprintf(out, sizeof out, "free");
        else
            snprintf(out, sizeof out, "%s [%ld,+%ld) by %s", type_name(f.l_type), (long)f.l_start,
                     (long)f.l_len, f.l_pid == parent ? "parent" : f.l_pid == -1 ? "-1 (OFD)" : "?");
        /* and whether F_SETLK agrees */
        int r = lk(fd, F_SETLK, type, start, len);
        int e = errno;
        size_t k = strlen(out);
        snprintf(out + k, sizeof out - k, "; F_SETLK %s", r == 0 ? "ok" : errname(e));
        write(p[1], out, strlen(out));
        _exit(0);
    }
    close(p[1]);
    char buf[128] = {0};
    CHECK(read(p[0], buf, sizeof buf - 1) > 0);
    close(p[0]);
    CHECK(wait_child(c) == 0);
    printf("%s: %s\n", label, buf);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    parent = getpid();
    int fd = open("locked", O_RDWR | O_CREAT, 0644);
    CHECK(ftruncate(fd, 1000) == 0);

    OK("write lock [0,10)", lk(fd, F_SETLK, F_WRLCK, 0, 10));
    probe("write [5,+5)", F_WRLCK, 5, 5);
    probe("read [9,+1)", F_RDLCK, 9, 1);
    probe("write [10,+10), adjacent", F_WRLCK, 10, 10);
    OK("read lock [100,200)", lk(fd, F_SETLK, F_RDLCK, 100, 100));
    probe("read [150,+10)", F_RDLCK, 150, 10);
    probe("write [150,+10)", F_WRLCK, 150, 10);
    OK("lock to EOF and beyond [500,+0)", lk(fd, F_SETLK, F_WRLCK, 500, 0));
    probe("write [5000,+1), past EOF", F_WRLCK, 5000, 1);

    /* our own locks never conflict with ourselves; a new lock replaces the old type */
    OK("read lock over our write lock", lk(fd, F_SETLK, F_RDLCK, 0, 10));
    probe("read [0,+10) after our downgrade", F_RDLCK, 0, 10);
    probe("write [0,+10) after our downgrade", F_WRLCK, 0, 10);

    /* unlocking the middle splits a range */
    OK("write lock [0,10) again", lk(fd, F_SETLK, F_WRLCK, 0, 10));
    OK("unlock [3,5)", lk(fd, F_SETLK, F_UNLCK, 3, 2));
    probe("write [3,+2), the hole", F_WRLCK, 3, 2);
    probe("write [2,+1)", F_WRLCK, 2, 1);
    probe("write [5,+1)", F_WRLCK, 5, 1);
    struct flock own = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
    OK("F_GETLK on our own lock", fcntl(fd, F_GETLK, &own));
    printf("  own locks are invisible to us: %s\n", type_name(own.l_type));

    /* SEEK_CUR-relative ranges */
    lseek(fd, 400, SEEK_SET);
    struct flock rel = {.l_type = F_WRLCK, .l_whence = SEEK_CUR, .l_start = -50, .l_len = 10};
    OK("write lock at SEEK_CUR-50", fcntl(fd, F_SETLK, &rel));
    probe("write [355,+1)", F_WRLCK, 355, 1);

    /* closing any descriptor of the file drops all our locks on it */
    int other = open("locked", O_RDONLY);
    close(other);
    probe("after closing another fd of the file", F_WRLCK, 0, 1000);

    /* F_SETLKW waits for the holder */
    CHECK(lk(fd, F_SETLK, F_WRLCK, 0, 1) == 0);
    int p[2];
    CHECK(pipe(p) == 0);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        close(p[0]);
        int f = open("locked", O_RDWR);
        long t0 = mono_ms(); /* before telling the parent, who then waits 40 ms to unlock */
        write(p[1], "s", 1);
        int r = lk(f, F_SETLKW, F_WRLCK, 0, 1);
        long waited = mono_ms() - t0;
        write(p[1], waited >= 20 ? "w" : "n", 1);
        _exit(r == 0 ? 0 : 1);
    }
    close(p[1]);
    char b = 0;
    CHECK(read(p[0], &b, 1) == 1);
    usleep(40000);
    OK("unlock for the waiter", lk(fd, F_SETLK, F_UNLCK, 0, 1));
    CHECK(read(p[0], &b, 1) == 1);
    printf("F_SETLKW got it after waiting: %d, status %d\n", b == 'w', wait_child(c));
    close(p[0]);

    /* deadlock: each holds one byte and waits for the other's; one of the two gets EDEADLK */
    CHECK(lk(fd, F_SETLK, F_WRLCK, 10, 1) == 0);
    int q[2];
    CHECK(pipe(q) == 0);
    c = fork();
    if (c == 0) {
        int f = open("locked", O_RDWR);
        lk(f, F_SETLK, F_WRLCK, 20, 1);
        write(q[1], "h", 1);
        int r = lk(f, F_SETLKW, F_WRLCK, 10, 1);
        _exit(r == 0 ? 0 : errno == EDEADLK ? 1 : 2);
    }
    CHECK(read(q[0], &b, 1) == 1);
    usleep(20000);
    int r = lk(fd, F_SETLKW, F_WRLCK, 20, 1);
    int mine = r < 0 && errno == EDEADLK;
    if (mine)
        lk(fd, F_SETLK, F_UNLCK, 10, 1); /* let the child through */
    int theirs = wait_child(c) == 1;
    printf("exactly one got EDEADLK: %d\n", mine + theirs == 1);
    lk(fd, F_SETLK, F_UNLCK, 0, 0);

    /* open file description locks: owned by the description, not the process */
    int fd1 = open("locked", O_RDWR), fd2 = open("locked", O_RDWR);
    OK("F_OFD_SETLK write [0,10) on fd1", lk(fd1, F_OFD_SETLK, F_WRLCK, 0, 10));
    ERR("F_OFD_SETLK on a second open", lk(fd2, F_OFD_SETLK, F_WRLCK, 5, 1), EAGAIN);
    ERR("classic F_SETLK in the same process", lk(fd2, F_SETLK, F_WRLCK, 5, 1), EAGAIN);
    struct flock g = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    OK("F_OFD_GETLK from fd2", fcntl(fd2, F_OFD_GETLK, &g));
    printf("  %s [%ld,+%ld) pid %d\n", type_name(g.l_type), (long)g.l_start, (long)g.l_len, g.l_pid);
    probe("classic view from another process", F_WRLCK, 0, 10);
    int d = dup(fd1);
    close(fd1);
    ERR("held while a dup lives", lk(fd2, F_OFD_SETLK, F_WRLCK, 5, 1), EAGAIN);
    close(d);
    OK("free after the last close", lk(fd2, F_OFD_SETLK, F_WRLCK, 5, 1));
    struct flock bad = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1, .l_pid = 1};
    ERR("F_OFD_SETLK with l_pid set", fcntl(fd2, F_OFD_SETLK, &bad), EINVAL);
    close(fd2);

    /* errors */
    int ro = open("locked", O_RDONLY);
    ERR("write lock on a read-only fd", lk(ro, F_SETLK, F_WRLCK, 0, 1), EBADF);
    int wo = open("locked", O_WRONLY);
    ERR("read lock on a write-only fd", lk(wo, F_SETLK, F_RDLCK, 0, 1), EBADF);
    ERR("bad type", lk(fd, F_SETLK, 42, 0, 1), EINVAL);
    ERR("negative start", lk(fd, F_SETLK, F_WRLCK, -5, 1), EINVAL);
    close(ro);
    close(wo);
    close(fd);
    return t_finish();
}
