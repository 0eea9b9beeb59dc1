/* madvise refuses bad advice and ranges as Linux does, on small (native) and large (served)
 * anonymous mappings and on a shared file mapping. */
#include "common.h"
#include <sys/mman.h>
#include <sys/resource.h>
int main(int argc, char **argv) {
    scratch_enter(argc, argv);
    long pg = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    memset(m, 1, 4 * pg);
    OK("normal", madvise(m, 4 * pg, MADV_NORMAL));
    OK("willneed", madvise(m, 4 * pg, MADV_WILLNEED));
    OK("dontneed", madvise(m, pg, MADV_DONTNEED));
    printf("dontneed zeroes: %d\n", m[0] == 0 && m[pg] == 1);
    OK("zero length", madvise(m, 0, MADV_NORMAL));
    ERR("bad advice", madvise(m, pg, 12345), EINVAL);
    ERR("bad advice 999", madvise(m, pg, 999), EINVAL);
    ERR("unaligned", madvise(m + 1, pg, MADV_NORMAL), EINVAL);
    ERR("wrap", madvise(m, (size_t)-pg, MADV_NORMAL), EINVAL);
    munmap(m + pg, pg);
    ERR("over a hole", madvise(m, 4 * pg, MADV_NORMAL), ENOMEM);
    OK("dontfork", madvise(m, pg, MADV_DONTFORK));
    ERR("unmapped low", madvise((void *)0x10000, pg, MADV_NORMAL), ENOMEM);
    ERR("kernel address", madvise((void *)0xffff800000000000UL, pg, MADV_NORMAL), ENOMEM);
    /* a large mapping (which the LibOS serves itself) takes the same advice */
    size_t big = 128UL << 20;
    char *b = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(b != MAP_FAILED);
    b[0] = 1;
    OK("big dontneed", madvise(b, big, MADV_DONTNEED));
    printf("big zeroed: %d\n", b[0] == 0);
    OK("big free", madvise(b, big, MADV_FREE));
    ERR("big remove", madvise(b, big, MADV_REMOVE), EINVAL);
    OK("big hugepage", madvise(b, big, MADV_NOHUGEPAGE));
    ERR("big bad", madvise(b, big, 77), EINVAL);
    ERR("past big", madvise(b, big + 2 * pg, MADV_NORMAL), ENOMEM);
    /* a shared file mapping: MADV_REMOVE punches a hole */
    int fd = open("f", O_RDWR | O_CREAT, 0644);
    CHECK(fd >= 0 && ftruncate(fd, 2 * pg) == 0);
    char *f = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(f != MAP_FAILED);
    memset(f, 7, 2 * pg);
    SHOW("file remove", madvise(f, pg, MADV_REMOVE));
    printf("file first page: %d\n", f[0]);
    OK("file dontneed", madvise(f + pg, pg, MADV_DONTNEED));
    printf("file second page kept: %d\n", f[pg]);
    ERR("file private remove", madvise(m, pg, MADV_REMOVE), EINVAL);
    return t_finish();
}
