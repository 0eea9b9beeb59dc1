/* getdents64 through opendir/readdir: names and d_type, sorted; rewinddir; deletion while reading. */
#include "common.h"
#include <sys/syscall.h>

static int cmp(const void *a, const void *b) { return strcmp(*(char **)a, *(char **)b); }

static void list(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        printf("opendir %s: %s\n", path, errname(errno));
        t_failures++;
        return;
    }
    char *names[512];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < 512) {
        char t = de->d_type == DT_DIR ? 'd' : de->d_type == DT_REG ? 'f' : de->d_type == DT_LNK ? 'l'
               : de->d_type == DT_FIFO ? 'p' : de->d_type == DT_UNKNOWN ? '?' : 'o';
        if (asprintf(&names[n], "%s:%c", de->d_name, t) > 0)
            n++;
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp);
    printf("%s (%d):", path, n);
    for (int i = 0; i < n; i++) {
        printf(" %s", names[i]);
        free(names[i]);
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(mkdir("d", 0755) == 0);
    list("d");
    CHECK(write_file("d/b", "x") == 0);
    CHECK(write_file("d/a", "x") == 0);
    CHECK(mkdir("d/sub", 0755) == 0);
    CHECK(symlink("a", "d/link") == 0);
    CHECK(mkfifo("d/fifo", 0644) == 0);
    list("d");

    /* many entries: more than one getdents64 buffer */
    char name[64];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "d/sub/entry-with-a-long-name-%03d", i);
        CHECK(write_file(name, "") == 0);
    }
    DIR *dir = opendir("d/sub");
    int count = 0, seen_dot = 0, seen_dotdot = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        count++;
        seen_dot += strcmp(de->d_name, ".") == 0;
        seen_dotdot += strcmp(de->d_name, "..") == 0;
    }
    printf("d/sub entries: %d dot=%d dotdot=%d\n", count, seen_dot, seen_dotdot);
    rewinddir(dir);
    count = 0;
    while (readdir(dir) != NULL)
        count++;
    printf("after rewinddir: %d\n", count);
    closedir(dir);

    /* raw getdents64 with a tiny buffer */
    int fd = open("d", O_RDONLY | O_DIRECTORY);
    char small[8];
    ERR("getdents64 tiny buffer", syscall(SYS_getdents64, fd, small, sizeof small), EINVAL);
    char big[4096];
    long total = 0, r;
    int entries = 0;
    while ((r = syscall(SYS_getdents64, fd, big, sizeof big)) > 0) {
        for (long off = 0; off < r;) {
            unsigned short reclen = *(unsigned short *)(big + off + 16);
            CHECK(reclen % 8 == 0);
            off += reclen;
            entries++;
        }
        total += r;
    }
    printf("raw getdents64 entries: %d end: %ld\n", entries, r);
    close(fd);
    fd = open("d/a", O_RDONLY);
    ERR("getdents64 on file", syscall(SYS_getdents64, fd, big, sizeof big), ENOTDIR);
    close(fd);

    /* removing entries while iterating must not crash nor repeat entries */
    dir = opendir("d/sub");
    int removed = 0;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char p[300];
        snprintf(p, sizeof p, "d/sub/%s", de->d_name);
        if (unlink(p) == 0)
            removed++;
    }
    closedir(dir);
    printf("removed while iterating: %d\n", removed);
    list("d/sub");
    ERR("opendir missing", (long)(opendir("nope") ? 0 : -1), ENOENT);
    return t_finish();
}
