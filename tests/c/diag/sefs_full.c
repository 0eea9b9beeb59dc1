/* A full-disk workload for SEFS, and its checker.
 *
 *   sefs_full fill DIR   writes DIR/f0, f1, ... (1 MiB each, content(N)), each fsync'd, until an
 *                        fsync fails: "stored fN" per file, then "fsync fK: <error>".  Then it
 *                        deletes f0..f3 and fsyncs DIR ("deleted: <result>"), fsyncs fK again
 *                        ("fsync fK again: <result>"), writes and fsyncs DIR/g
 *                        ("stored g: <result>"), truncates f4 to 1000 bytes and fsyncs it
 *                        ("truncated f4: <result>").  Exit 0 if every step after the fill
 *                        succeeded.
 *   sefs_full spill DIR MIB  writes MIB MiB to DIR/spill without fsync and exits 0: the LibOS
 *                        commits it at exit, or fails to (each MiB is content(2000000)).
 *   sefs_full check DIR  prints "<name> <size> ok|bad" for each entry of DIR, sorted by name (ok:
 *                        the first <size> bytes of content(N), g being N = 1000000).
 *
 * content(N) is a byte stream of a linear congruential generator seeded with N: a file that
 * is stale, zero-filled or another file's never matches.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SIZE (1024 * 1024)
#define G 1000000UL
#define S 2000000UL /* spill */

static void content(unsigned char *buf, unsigned long n, size_t size)
{
    unsigned long x = n * 2654435761UL + 1;
    for (size_t i = 0; i < size; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        buf[i] = (unsigned char)(x >> 56);
    }
}

static const char *result(int rc)
{
    return rc == 0 ? "ok" : strerror(errno);
}

static int write_file(const char *path, unsigned long n, int *keep)
{
    static unsigned char buf[SIZE];
    content(buf, n, SIZE);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, SIZE) != SIZE)
        return -1;
    int rc = fsync(fd);
    if (keep != NULL && rc != 0) {
        *keep = fd; /* fsync'd again once there is room */
        return rc;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

static int fill(const char *dir)
{
    char path[4096];
    unsigned long n;
    int failed = -1;
    for (n = 0;; n++) {
        snprintf(path, sizeof path, "%s/f%lu", dir, n);
        if (write_file(path, n, &failed) != 0)
            break;
        printf("stored f%lu\n", n);
    }
    printf("fsync f%lu: %s\n", n, strerror(errno));
    int status = 0;
    for (int k = 0; k < 4; k++) {
        snprintf(path, sizeof path, "%s/f%d", dir, k);
        if (unlink(path) != 0)
            status = 1;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    int rc = dfd < 0 ? -1 : fsync(dfd);
    printf("deleted: %s\n", result(rc));
    status |= rc != 0;
    rc = failed < 0 ? -1 : fsync(failed);
    printf("fsync f%lu again: %s\n", n, result(rc));
    status |= rc != 0;
    snprintf(path, sizeof path, "%s/g", dir);
    rc = write_file(path, G, NULL);
    printf("stored g: %s\n", result(rc));
    status |= rc != 0;
    snprintf(path, sizeof path, "%s/f4", dir);
    int fd = open(path, O_WRONLY);
    rc = fd < 0 || ftruncate(fd, 1000) != 0 ? -1 : fsync(fd);
    printf("truncated f4: %s\n", result(rc));
    status |= rc != 0;
    return status;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int check(const char *dir)
{
    static unsigned char want[SIZE], got[SIZE + 1];
    char path[4096];
    struct dirent **names;
    int count = scandir(dir, &names, NULL, by_name);
    if (count < 0) {
        perror("scandir");
        return 1;
    }
    for (int i = 0; i < count; i++) {
        const char *name = names[i]->d_name;
        if (name[0] == '.')
            continue;
        unsigned long n = name[0] == 'g' ? G : name[0] == 's' ? S : strtoul(name + 1, NULL, 10);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        int fd = open(path, O_RDONLY);
        size_t total = 0;
        ssize_t r = 0;
        while (fd >= 0 && total < sizeof got && (r = read(fd, got + total, sizeof got - total)) > 0)
            total += (size_t)r;
        if (fd < 0 || r < 0) {
            printf("%s unreadable %s\n", name, strerror(errno));
            continue;
        }
        close(fd);
        content(want, n, SIZE);
        printf("%s %zu %s\n", name, total, total <= SIZE && memcmp(want, got, total) == 0 ? "ok" : "bad");
    }
    return 0;
}

static int spill(const char *dir, long mib)
{
    static unsigned char buf[SIZE];
    char path[4096];
    content(buf, S, SIZE);
    snprintf(path, sizeof path, "%s/spill", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    for (long i = 0; i < mib; i++)
        if (write(fd, buf, SIZE) != SIZE) {
            perror(path);
            return 1;
        }
    printf("spilled %ld MiB\n", mib);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "spill") == 0)
        return spill(argv[2], atol(argv[3]));
    if (argc == 3 && strcmp(argv[1], "fill") == 0)
        return fill(argv[2]);
    if (argc == 3 && strcmp(argv[1], "check") == 0)
        return check(argv[2]);
    fprintf(stderr, "usage: sefs_full fill|check DIR, sefs_full spill DIR MIB\n");
    return 2;
}
