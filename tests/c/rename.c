/* rename and renameat2 (RENAME_NOREPLACE, RENAME_EXCHANGE). */
#include "common.h"
#include <sys/syscall.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#define RENAME_EXCHANGE 2
#endif

static long r2(const char *a, const char *b, unsigned flags)
{
    return syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, flags);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(write_file("a", "A") == 0);
    CHECK(write_file("b", "B") == 0);
    OK("rename a->c", rename("a", "c"));
    ERR("old name gone", access("a", F_OK), ENOENT);
    printf("c: %s\n", read_file("c"));
    OK("rename over existing", rename("c", "b"));
    printf("b: %s\n", read_file("b"));
    ERR("rename missing", rename("nope", "x"), ENOENT);
    OK("rename to itself", rename("b", "b"));

    CHECK(write_file("x", "X") == 0);
    ERR("NOREPLACE existing", r2("x", "b", RENAME_NOREPLACE), EEXIST);
    OK("NOREPLACE new", r2("x", "y", RENAME_NOREPLACE));
    OK("EXCHANGE", r2("y", "b", RENAME_EXCHANGE));
    printf("after exchange b=%s ", read_file("b"));
    printf("y=%s\n", read_file("y"));
    ERR("EXCHANGE missing", r2("y", "zz", RENAME_EXCHANGE), ENOENT);
    ERR("EXCHANGE|NOREPLACE", r2("y", "b", RENAME_EXCHANGE | RENAME_NOREPLACE), EINVAL);

    CHECK(mkdir("d1", 0755) == 0);
    CHECK(mkdir("d2", 0755) == 0);
    CHECK(write_file("d1/f", "in d1") == 0);
    CHECK(write_file("d2/g", "in d2") == 0);
    ERR("dir over non-empty dir", rename("d1", "d2"), ENOTEMPTY);
    ERR("dir over file", rename("d1", "b"), ENOTDIR);
    ERR("file over dir", rename("b", "d2"), EISDIR);
    ERR("dir into itself", rename("d1", "d1/sub"), EINVAL);
    OK("move file across dirs", rename("d1/f", "d2/f"));
    printf("d2/f: %s\n", read_file("d2/f"));
    OK("dir over empty dir", rename("d2", "d1"));
    ERR("d2 gone", access("d2", F_OK), ENOENT);
    printf("d1/g: %s\n", read_file("d1/g"));
    CHECK(mkdir("d3", 0755) == 0);
    OK("EXCHANGE dir and file", r2("d3", "b", RENAME_EXCHANGE));
    struct stat st;
    CHECK(stat("b", &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(stat("d3", &st) == 0 && S_ISREG(st.st_mode));

    /* an open descriptor follows the file across renames */
    int fd = open("y", O_RDONLY);
    OK("rename open file", rename("y", "d1/y2"));
    char buf[8] = {0};
    CHECK(read(fd, buf, sizeof buf - 1) == 1);
    printf("read through old fd: %s\n", buf);
    close(fd);

    /* symlinks are renamed, not followed */
    CHECK(symlink("d1/g", "sl") == 0);
    OK("rename symlink", rename("sl", "sl2"));
    char t[64] = {0};
    CHECK(readlink("sl2", t, sizeof t) == 4);
    printf("sl2 -> %s\n", t);
    ERR("rename dot", rename(".", "dotx"), EBUSY);
    return t_finish();
}
