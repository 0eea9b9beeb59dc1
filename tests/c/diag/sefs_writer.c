/* A crash-test workload for SEFS, and its checker.
 *
 *   sefs_writer write DIR BASE   loops forever: writes DIR/f<N> (N = BASE, BASE+1, ...) with
 *                                content(N), fsyncs it and prints "synced N"; every 4th file it
 *                                renames an older f<M> to r<M>, every 6th it unlinks an older
 *                                file, fsyncing the directory after each.  Before each step it
 *                                prints "start <step>", after the fsync returned "<done line>".
 *   sefs_writer check DIR        prints "<name> <size> ok|bad" for every entry of DIR (ok: the
 *                                exact content(N) of the N in its name) and exits 0 if it
 *                                could read them all.
 *
 * content(N) is size(N) bytes (1 KiB .. 1 MiB) of 16-byte records "NNNNNNN@IIIIIII\n" (N and
 * the record's index), so a torn, zero-filled, shifted or foreign block never matches.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REC 16
#define MAX_SIZE (1024 * 1024)

static size_t size_of(unsigned long n)
{
    return (size_t)1024 * (1 + (n * 7919UL) % 1024);
}

static void fill(char *buf, unsigned long n, size_t size)
{
    char rec[REC + 1];
    for (size_t i = 0; i < size / REC; i++) {
        snprintf(rec, sizeof rec, "%07lu@%07zx\n", n % 10000000UL, i % 0x10000000UL);
        memcpy(buf + i * REC, rec, REC);
    }
}

static void die(const char *what, const char *path)
{
    fprintf(stderr, "sefs_writer: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || fsync(fd) != 0)
        die("fsync", dir);
    close(fd);
}

static int write_loop(const char *dir, unsigned long base)
{
    static char buf[MAX_SIZE];
    char path[4096], to[4096];
    /* what became of file k - base: 'f' present, 'r' renamed, 'x' unlinked */
    static char state[1 << 20];
    for (unsigned long n = base;; n++) {
        unsigned long k = n - base;
        if (k >= sizeof state)
            for (;;)
                pause();
        size_t size = size_of(n);
        fill(buf, n, size);
        snprintf(path, sizeof path, "%s/f%lu", dir, n);
        printf("start write f%lu\n", n);
        fflush(stdout);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            die("open", path);
        if (write(fd, buf, size) != (ssize_t)size)
            die("write", path);
        if (fsync(fd) != 0)
            die("fsync", path);
        close(fd);
        state[k] = 'f';
        printf("synced %lu\n", n);
        fflush(stdout);
        if (k % 4 == 3) {
            unsigned long m = n - 2;
            snprintf(path, sizeof path, "%s/f%lu", dir, m);
            snprintf(to, sizeof to, "%s/r%lu", dir, m);
            printf("start rename f%lu r%lu\n", m, m);
            fflush(stdout);
            if (rename(path, to) != 0)
                die("rename", path);
            sync_dir(dir);
            state[m - base] = 'r';
            printf("renamed f%lu r%lu\n", m, m);
            fflush(stdout);
        }
        if (k % 6 == 5) {
            unsigned long m = n - 4;
            char c = state[m - base];
            snprintf(path, sizeof path, "%s/%c%lu", dir, c, m);
            printf("start unlink %c%lu\n", c, m);
            fflush(stdout);
            if (unlink(path) != 0)
                die("unlink", path);
            sync_dir(dir);
            state[m - base] = 'x';
            printf("unlinked %c%lu\n", c, m);
            fflush(stdout);
        }
    }
    return 0;
}

static int check(const char *dir)
{
    static char want[MAX_SIZE], got[MAX_SIZE + 1];
    char path[4096];
    DIR *d = opendir(dir);
    if (!d)
        die("opendir", dir);
    struct dirent *e;
    int status = 0;
    while ((errno = 0, e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0) {
            printf("%s -1 unreadable %s\n", e->d_name, strerror(errno));
            status = 1;
            continue;
        }
        size_t total = 0;
        ssize_t r;
        while (total < sizeof got && (r = read(fd, got + total, sizeof got - total)) > 0)
            total += (size_t)r;
        if (r < 0) {
            printf("%s -1 unreadable %s\n", e->d_name, strerror(errno));
            status = 1;
            close(fd);
            continue;
        }
        close(fd);
        char *end;
        unsigned long n = strtoul(e->d_name + 1, &end, 10);
        int named = (e->d_name[0] == 'f' || e->d_name[0] == 'r') && end != e->d_name + 1 && !*end;
        int ok = 0;
        if (named && total == size_of(n)) {
            fill(want, n, total);
            ok = memcmp(want, got, total) == 0;
        }
        printf("%s %zu %s\n", e->d_name, total, ok ? "ok" : "bad");
    }
    if (errno)
        die("readdir", dir);
    closedir(d);
    return status;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "write") == 0)
        return write_loop(argv[2], strtoul(argv[3], NULL, 10));
    if (argc == 3 && strcmp(argv[1], "check") == 0)
        return check(argv[2]);
    fprintf(stderr, "usage: sefs_writer write DIR BASE | sefs_writer check DIR\n");
    return 2;
}
