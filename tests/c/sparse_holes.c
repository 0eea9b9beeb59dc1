/* Sparse files: SEEK_DATA/SEEK_HOLE, fallocate(PUNCH_HOLE|KEEP_SIZE), a file truncated far
 * past its data. Offsets are MiB-aligned, so every file system with pages or blocks up to
 * 1 MiB agrees. "sparse_holes DIR keep" leaves DIR/big (data at 0 and 3 MiB, a punched hole
 * at 1 MiB, 1 TiB long) in place, and "sparse_holes DIR check" (without emptying DIR) checks
 * such a file again, as another run that loaded it from storage sees it. */
#include "common.h"

#define MIB (1L << 20)
#define TIB (1L << 40)

static void layout(int fd)
{
    printf("size: %ld\n", (long)lseek(fd, 0, SEEK_END));
    printf("data from 0: %ld\n", (long)lseek(fd, 0, SEEK_DATA));
    printf("hole from 0: %ld\n", (long)lseek(fd, 0, SEEK_HOLE));
    printf("data from 1 MiB: %ld\n", (long)lseek(fd, MIB, SEEK_DATA));
    printf("hole from 3 MiB: %ld\n", (long)lseek(fd, 3 * MIB, SEEK_HOLE));
    ERR("data past the last", lseek(fd, 4 * MIB, SEEK_DATA), ENXIO);
    char b[4] = {0};
    CHECK(pread(fd, b, 3, 3 * MIB) == 3);
    printf("at 3 MiB: %s\n", b);
    memset(b, 'x', sizeof b);
    CHECK(pread(fd, b, 3, MIB + 5) == 3);
    printf("punched reads zeros: %d\n", b[0] == 0 && b[1] == 0 && b[2] == 0);
    CHECK(pread(fd, b, 3, TIB - 3) == 3);
    printf("end reads zeros: %d\n", b[0] == 0 && b[1] == 0 && b[2] == 0);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    printf("few blocks: %d\n", st.st_blocks > 0 && st.st_blocks < 8 * MIB / 512);
}

int main(int argc, char **argv)
{
    int check = argc > 2 && strcmp(argv[2], "check") == 0;
    if (check) {
        if (chdir(argv[1]) != 0) {
            printf("FAIL cannot enter %s\n", argv[1]);
            return 2;
        }
    } else {
        scratch_enter(argc, argv);
    }
    if (!check) {
        static char buf[2 * MIB];
        memset(buf, 'd', sizeof buf);
        int fd = OK("create", open("big", O_RDWR | O_CREAT | O_TRUNC, 0644));
        CHECK(pwrite(fd, buf, sizeof buf, 0) == (ssize_t)sizeof buf);
        CHECK(pwrite(fd, "end", 3, 3 * MIB) == 3);
        /* punch the second MiB: the size stays, the range reads zeros, SEEK_DATA skips it */
        OK("punch", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, MIB, MIB));
        OK("truncate to 1 TiB", ftruncate(fd, TIB));
        OK("fsync", fsync(fd));
        layout(fd);
        close(fd);
    }
    int fd = OK("open", open("big", O_RDONLY));
    layout(fd);
    close(fd);
    if (t_failures == 0)
        printf("PASS\n");
    return t_failures ? 1 : 0;
}
