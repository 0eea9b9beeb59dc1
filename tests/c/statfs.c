/* statfs/fstatfs: sanity of the fields (the file system type differs between hosts). */
#include "common.h"
#include <sys/statfs.h>
#include <sys/statvfs.h>

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct statfs s, f;
    OK("statfs scratch", statfs(".", &s));
    printf("bsize > 0: %d namelen >= 255: %d\n", s.f_bsize > 0, s.f_namelen >= 255);
    printf("blocks >= bfree >= bavail: %d\n", s.f_blocks >= s.f_bfree && s.f_bfree >= s.f_bavail);
    CHECK(write_file("f", "x") == 0);
    int fd = open("f", O_RDONLY);
    OK("fstatfs", fstatfs(fd, &f));
    printf("same type as statfs: %d\n", f.f_type == s.f_type);
    close(fd);
    struct statvfs v;
    OK("statvfs", statvfs(".", &v));
    printf("statvfs frsize > 0: %d\n", v.f_frsize > 0);
    OK("statfs /", statfs("/", &s));
    OK("statfs /proc", statfs("/proc", &s));
    printf("/proc is procfs: %d\n", s.f_type == 0x9fa0);
    OK("statfs /dev", statfs("/dev", &s));
    ERR("statfs missing", statfs("nope", &s), ENOENT);
    ERR("fstatfs bad fd", fstatfs(999, &s), EBADF);
    return t_finish();
}
