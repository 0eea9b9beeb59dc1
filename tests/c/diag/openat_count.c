/* Makes exactly 7 openat calls (5 that succeed, 2 that fail with ENOENT) and 3 uname calls,
 * each a call the LibOS serves; built static, so that no loader adds calls of its own. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int opened = 0, failed = 0;
    for (int i = 0; i < 7; i++) {
        const char *path = i < 5 ? "/bin" : "/no/such/file";
        long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            opened++;
            close((int)fd);
        } else {
            failed++;
        }
    }
    struct utsname u;
    for (int i = 0; i < 3; i++)
        syscall(SYS_uname, &u);
    printf("opened %d, failed %d\n", opened, failed);
    return opened == 5 && failed == 2 ? 0 : 1;
}
