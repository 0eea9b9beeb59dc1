/* A listing while the directory changes, as POSIX and Linux promise it: seekdir to any
 * telldir value resumes at that entry; names made or removed during a listing never make
 * an untouched name be seen twice or missed; rewinddir sees the names made meanwhile. */
#include "common.h"

#define N 600

static int index_of(const char *name)
{
    int i;
    char rest;
    if (sscanf(name, "f%d%c", &i, &rest) != 1 || i < 0 || i >= 4 * N)
        return -1;
    return i;
}

static void make(int i)
{
    char p[32];
    snprintf(p, sizeof p, "d/f%d", i);
    CHECK(write_file(p, "") == 0);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(mkdir("d", 0755) == 0);
    for (int i = 0; i < N; i++)
        make(i);

    /* seekdir to every telldir value resumes at the entry read after it */
    DIR *d = opendir("d");
    static long pos[N + 2];
    static char names[N + 2][256];
    int n = 0;
    struct dirent *de;
    for (;;) {
        long at = telldir(d);
        if ((de = readdir(d)) == NULL || n >= N + 2)
            break;
        pos[n] = at;
        snprintf(names[n], sizeof names[n], "%s", de->d_name);
        n++;
    }
    int resumed = 0;
    for (int k = n - 1; k >= 0; k -= 7) {
        seekdir(d, pos[k]);
        de = readdir(d);
        resumed += de != NULL && strcmp(de->d_name, names[k]) == 0;
    }
    printf("entries %d, resumed at %d of %d telldir positions\n", n, resumed, (n + 6) / 7);
    closedir(d);

    /* names made and removed while listing: each untouched name is seen exactly once */
    static int seen[4 * N];
    d = opendir("d");
    int read = 0, bad = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        int i = index_of(de->d_name);
        if (i < 0) {
            bad++;
            continue;
        }
        seen[i]++;
        if (++read == N / 4) {
            for (int j = N; j < 2 * N; j++)
                make(j); /* made during the listing: may or may not be seen */
            for (int j = 0; j < N; j += 3) {
                char p[32];
                snprintf(p, sizeof p, "d/f%d", j); /* removed: seen at most once */
                CHECK(unlink(p) == 0);
            }
        }
    }
    int untouched_once = 0, twice = 0, removed_ok = 0;
    for (int i = 0; i < 2 * N; i++) {
        twice += seen[i] > 1;
        if (i < N && i % 3 != 0)
            untouched_once += seen[i] == 1;
        if (i < N && i % 3 == 0)
            removed_ok += seen[i] <= 1;
    }
    printf("untouched seen once: %d of %d, removed seen at most once: %d of %d, twice: %d, bad %d\n",
           untouched_once, N - (N + 2) / 3, removed_ok, (N + 2) / 3, twice, bad);

    /* rewinddir: the listing is the directory as it is now */
    rewinddir(d);
    memset(seen, 0, sizeof seen);
    int count = 0;
    while ((de = readdir(d)) != NULL) {
        int i = index_of(de->d_name);
        if (i >= 0) {
            seen[i]++;
            count++;
        }
    }
    int right = 0;
    for (int i = 0; i < 2 * N; i++)
        right += seen[i] == (i >= N || i % 3 != 0 ? 1 : 0);
    printf("after rewinddir: %d names, %d of %d as they are\n", count, right, 2 * N);

    /* and once more after a rename over an existing name, in a fresh stream */
    CHECK(rename("d/f1", "d/f2") == 0);
    CHECK(rename("d/f4", "d/f3999") == 0);
    make(3 * N);
    rewinddir(d);
    count = 0;
    int renamed = 0, made = 0, gone = 0;
    while ((de = readdir(d)) != NULL) {
        count += de->d_name[0] != '.';
        renamed += strcmp(de->d_name, "f3999") == 0;
        made += index_of(de->d_name) == 3 * N;
        gone += strcmp(de->d_name, "f1") == 0 || strcmp(de->d_name, "f4") == 0;
    }
    printf("after renames: %d names, renamed %d, made %d, gone %d\n", count, renamed, made, gone);
    closedir(d);
    return t_finish();
}
