/* Many small files in one directory, created one by one; prints one line per phase:
 *   manyfiles DIR N fsync|nofsync
 *     create  N files DIR/f<i>: open(O_CREAT|O_EXCL|O_WRONLY), write 16 bytes, fsync (with
 *             "fsync"), close
 *     list    read DIR to the end with readdir, counting the entries
 *     delete  unlink every file
 *   Each line: "<phase> <seconds>"; exits 1 at the first failure, naming the file and errno.
 * DIR must exist and be empty; it is left empty. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: manyfiles DIR N fsync|nofsync\n");
        return 2;
    }
    const char *dir = argv[1];
    long n = atol(argv[2]);
    int sync_each = strcmp(argv[3], "fsync") == 0;
    char path[4096], data[16];
    double a = now();
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/f%ld", dir, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) {
            fprintf(stderr, "create %s: %s (file %ld)\n", path, strerror(errno), i);
            return 1;
        }
        memset(data, 'a' + (int)(i % 26), sizeof data);
        if (write(fd, data, sizeof data) != (ssize_t)sizeof data ||
            (sync_each && fsync(fd) != 0) || close(fd) != 0) {
            fprintf(stderr, "write %s: %s (file %ld)\n", path, strerror(errno), i);
            return 1;
        }
    }
    double b = now();
    printf("create %.3f\n", b - a);
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        return 1;
    }
    long seen = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] == 'f')
            seen++;
    closedir(d);
    double c = now();
    if (seen != n) {
        fprintf(stderr, "listed %ld entries, expected %ld\n", seen, n);
        return 1;
    }
    printf("list %.3f\n", c - b);
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/f%ld", dir, i);
        if (unlink(path) != 0) {
            fprintf(stderr, "unlink %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    printf("delete %.3f\n", now() - c);
    return 0;
}
