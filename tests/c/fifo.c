/* FIFOs in the scratch directory: mkfifo/mknod, stat type, blocking open waits for the other
 * end, O_NONBLOCK opens (read: at once; write without a reader: ENXIO), data between two
 * processes, EOF, EPIPE, O_RDWR, unlink. */
#include "common.h"
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    OK("mkfifo", mkfifo("f", 0640));
    struct stat st;
    CHECK(stat("f", &st) == 0);
    printf("type %s mode %o size %ld\n", ftype(st.st_mode), st.st_mode & 07777, (long)st.st_size);
    ERR("mkfifo again", mkfifo("f", 0600), EEXIST);
    ERR("mkfifo in a missing dir", mkfifo("nodir/f", 0600), ENOENT);
    OK("mknod S_IFIFO", mknod("g", S_IFIFO | 0600, 0));
    CHECK(lstat("g", &st) == 0);
    printf("mknod type %s\n", ftype(st.st_mode));

    /* non-blocking opens */
    ERR("O_WRONLY|O_NONBLOCK without a reader", open("f", O_WRONLY | O_NONBLOCK), ENXIO);
    int r = OK("O_RDONLY|O_NONBLOCK without a writer", open("f", O_RDONLY | O_NONBLOCK));
    char buf[64];
    printf("read with no writer ever: %ld\n", (long)read(r, buf, sizeof buf));
    int w = OK("O_WRONLY|O_NONBLOCK with a reader", open("f", O_WRONLY | O_NONBLOCK));
    ERR("empty read with a writer", read(r, buf, sizeof buf), EAGAIN);
    CHECK(write(w, "abc", 3) == 3);
    printf("read: %ld\n", (long)read(r, buf, sizeof buf));
    ERR("lseek", lseek(r, 0, SEEK_SET), ESPIPE);
    close(w);
    printf("read after the writer left: %ld\n", (long)read(r, buf, sizeof buf));
    close(r);

    /* blocking opens between two processes: the writer's open returns only once the reader
     * has opened; the marker pipe shows the order */
    int marker[2];
    CHECK(pipe(marker) == 0);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        close(marker[1]);
        int fd = open("f", O_WRONLY); /* blocks until the parent opens for reading */
        struct pollfd pf = {marker[0], POLLIN, 0};
        int after = poll(&pf, 1, 0) == 1; /* the parent wrote the marker before its open */
        char msg[] = "through the fifo";
        write(fd, msg, sizeof msg - 1);
        close(fd);
        _exit(fd >= 0 && after ? 0 : 1);
    }
    close(marker[0]);
    usleep(30000);
    CHECK(write(marker[1], "m", 1) == 1);
    r = open("f", O_RDONLY);
    CHECK(r >= 0);
    size_t got = 0;
    ssize_t n;
    while ((n = read(r, buf + got, sizeof buf - 1 - got)) > 0)
        got += n;
    buf[got] = 0;
    printf("reader got: %s\n", buf);
    printf("writer's open waited for the reader: %d\n", wait_child(c) == 0);
    close(r);
    close(marker[1]);

    /* the other way round: a blocking reader waits for a writer */
    CHECK(pipe(marker) == 0);
    c = fork();
    if (c == 0) {
        close(marker[1]);
        int fd = open("f", O_RDONLY);
        struct pollfd pf = {marker[0], POLLIN, 0};
        int after = poll(&pf, 1, 0) == 1;
        char b[16] = {0};
        ssize_t k = read(fd, b, sizeof b - 1);
        _exit(fd >= 0 && after && k == 2 && strcmp(b, "hi") == 0 ? 0 : 1);
    }
    close(marker[0]);
    usleep(30000);
    CHECK(write(marker[1], "m", 1) == 1);
    w = open("f", O_WRONLY);
    CHECK(write(w, "hi", 2) == 2);
    printf("reader's open waited for the writer: %d\n", wait_child(c) == 0);
    /* the reader is gone: EPIPE */
    ERR("write without a reader", write(w, "x", 1), EPIPE);
    close(w);
    close(marker[1]);

    /* O_RDWR never blocks (Linux) and the fifo holds data for itself */
    int rw = OK("O_RDWR", open("f", O_RDWR));
    CHECK(write(rw, "loop", 4) == 4);
    memset(buf, 0, sizeof buf);
    CHECK(read(rw, buf, sizeof buf) == 4);
    printf("O_RDWR reads its own data: %s\n", buf);
    CHECK(fstat(rw, &st) == 0);
    printf("fstat on the open fifo: %s\n", ftype(st.st_mode));
    close(rw);

    /* a large transfer through the fifo */
    c = fork();
    if (c == 0) {
        int fd = open("f", O_WRONLY);
        char big[8192];
        memset(big, 'q', sizeof big);
        for (int i = 0; i < 64; i++)
            if (write(fd, big, sizeof big) != (ssize_t)sizeof big)
                _exit(1);
        _exit(0);
    }
    r = open("f", O_RDONLY);
    long total = 0;
    char big[8192];
    while ((n = read(r, big, sizeof big)) > 0)
        total += n;
    close(r);
    printf("transferred %ld bytes, writer %d\n", total, wait_child(c));

    /* an open fifo survives its unlink */
    r = open("f", O_RDONLY | O_NONBLOCK);
    w = open("f", O_WRONLY | O_NONBLOCK);
    OK("unlink", unlink("f"));
    ERR("stat after unlink", stat("f", &st), ENOENT);
    CHECK(write(w, "z", 1) == 1);
    printf("still works after unlink: %ld\n", (long)read(r, buf, 1));
    close(r);
    close(w);
    OK("unlink mknod'ed", unlink("g"));
    return t_finish();
}
