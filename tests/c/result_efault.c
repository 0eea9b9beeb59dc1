/* A result the LibOS writes for a call goes only where the caller may write: a read-only or
 * PROT_NONE buffer gives EFAULT and stays untouched, as with Linux's copy to the caller. */
#include "common.h"
#include <sys/mman.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    scratch_enter(argc, argv);
    write_file("f", "x");
    char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ERR("stat ro", syscall(SYS_stat, "f", ro), EFAULT);
    ERR("stat none", syscall(SYS_stat, "f", none), EFAULT);
    ERR("readlink ro", syscall(SYS_readlink, "/proc/self/exe", ro, 64), EFAULT);
    ERR("getcwd ro", syscall(SYS_getcwd, ro, 4096), EFAULT);
    printf("ro untouched: %d\n", ro[0] == 0);
    return t_finish();
}
