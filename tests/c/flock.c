/* flock between processes: LOCK_EX excludes, LOCK_SH shares, LOCK_NB gives EWOULDBLOCK,
 * upgrade and downgrade, locks belong to the open file description (shared by dup and fork,
 * not by a second open), released by the last close, and a blocked LOCK_EX wakes on unlock. */
#include "common.h"
#include <signal.h>
#include <sys/file.h>

/* In a child: open the file afresh and try flock(op); exit 0 if it worked, else 1. */
static int try_in_child(const char *path, int op)
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        int fd = open(path, O_RDONLY);
        _exit(flock(fd, op) == 0 ? 0 : (errno == EWOULDBLOCK ? 1 : 2));
    }
    return wait_child(c);
}

static void on_alarm(int sig)
{
    (void)sig;
}

static const char *verdict(int code)
{
    return code == 0 ? "granted" : code == 1 ? "EWOULDBLOCK" : "other error";
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(write_file("lockfile", "data") == 0);
    int fd = open("lockfile", O_RDWR);

    OK("LOCK_EX", flock(fd, LOCK_EX));
    printf("other process LOCK_SH|LOCK_NB: %s\n", verdict(try_in_child("lockfile", LOCK_SH | LOCK_NB)));
    printf("other process LOCK_EX|LOCK_NB: %s\n", verdict(try_in_child("lockfile", LOCK_EX | LOCK_NB)));
    int fd2 = open("lockfile", O_RDONLY);
    ERR("second open in this process", flock(fd2, LOCK_EX | LOCK_NB), EWOULDBLOCK);
    OK("relock the same description", flock(fd, LOCK_EX | LOCK_NB));

    OK("downgrade to LOCK_SH", flock(fd, LOCK_SH));
    printf("other LOCK_SH|LOCK_NB: %s\n", verdict(try_in_child("lockfile", LOCK_SH | LOCK_NB)));
    printf("other LOCK_EX|LOCK_NB: %s\n", verdict(try_in_child("lockfile", LOCK_EX | LOCK_NB)));
    OK("second open LOCK_SH", flock(fd2, LOCK_SH | LOCK_NB));
    ERR("upgrade while another shares", flock(fd, LOCK_EX | LOCK_NB), EWOULDBLOCK);
    OK("the other lets go", flock(fd2, LOCK_UN));
    OK("upgrade", flock(fd, LOCK_EX | LOCK_NB));

    /* a dup shares the lock: unlocking through it unlocks */
    int d = dup(fd);
    OK("LOCK_UN through a dup", flock(d, LOCK_UN));
    printf("other LOCK_EX|LOCK_NB after: %s\n", verdict(try_in_child("lockfile", LOCK_EX | LOCK_NB)));
    close(d);

    /* a lock is held by the open file description, kept while a forked child holds it */
    CHECK(flock(fd, LOCK_EX) == 0);
    int p[2];
    CHECK(pipe(p) == 0);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        close(p[1]);
        char b;
        read(p[0], &b, 1); /* holds the inherited descriptor until told */
        _exit(0);
    }
    close(p[0]);
    close(fd);
    printf("after our close, child still holds it: %s\n",
           verdict(try_in_child("lockfile", LOCK_EX | LOCK_NB)));
    close(p[1]);
    CHECK(wait_child(c) == 0);
    printf("after the child's exit: %s\n", verdict(try_in_child("lockfile", LOCK_EX | LOCK_NB)));

    /* a blocked LOCK_EX waits for the unlock */
    fd = open("lockfile", O_RDWR);
    CHECK(flock(fd, LOCK_EX) == 0);
    int q[2];
    CHECK(pipe(q) == 0);
    c = fork();
    if (c == 0) {
        close(q[0]);
        int f = open("lockfile", O_RDWR);
        long t0 = mono_ms(); /* before telling the parent, who then waits 40 ms to unlock */
        write(q[1], "s", 1);
        int r = flock(f, LOCK_EX); /* blocks */
        long waited = mono_ms() - t0;
        write(q[1], waited >= 20 ? "w" : "n", 1);
        _exit(r == 0 ? 0 : 1);
    }
    close(q[1]);
    char b = 0;
    CHECK(read(q[0], &b, 1) == 1); /* the child is about to lock */
    usleep(40000);
    OK("unlock", flock(fd, LOCK_UN));
    CHECK(read(q[0], &b, 1) == 1);
    printf("blocked locker got it after waiting: %d, status %d\n", b == 'w', wait_child(c));
    close(q[0]);

    /* a blocked flock is interrupted by a signal handler */
    CHECK(flock(fd, LOCK_EX) == 0);
    c = fork();
    if (c == 0) {
        int f = open("lockfile", O_RDWR);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_alarm; /* no SA_RESTART */
        sigaction(SIGALRM, &sa, NULL);
        ualarm(20000, 20000); /* repeating: whenever the flock starts, it is interrupted */
        int r = flock(f, LOCK_EX);
        _exit(r < 0 && errno == EINTR ? 0 : 1);
    }
    printf("blocked flock interrupted by a signal: %d\n", wait_child(c));

    ERR("bad operation", flock(fd, 0), EINVAL);
    ERR("closed fd", flock(99, LOCK_SH), EBADF);
    close(fd);
    close(fd2);
    return t_finish();
}
