/* A bad pointer in a path argument gives EFAULT, also for a page the caller may not read
 * (PROT_NONE), which the LibOS could read through /proc/PID/mem, and for a pointer to no page. */
#include "common.h"
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <sys/mman.h>
int main(int argc, char **argv) {
    scratch_enter(argc, argv);
    char *bad = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
    char *badp = (char *)1;
    struct stat st;
    write_file("f", "x");
    ERR("open", syscall(SYS_open, bad, O_RDONLY), EFAULT);
    ERR("open1", syscall(SYS_open, badp, O_RDONLY), EFAULT);
    ERR("openat", syscall(SYS_openat, AT_FDCWD, bad, O_RDONLY), EFAULT);
    ERR("stat", syscall(SYS_stat, bad, &st), EFAULT);
    ERR("lstat", syscall(SYS_lstat, bad, &st), EFAULT);
    ERR("newfstatat", syscall(SYS_newfstatat, AT_FDCWD, bad, &st, 0), EFAULT);
    ERR("access", syscall(SYS_access, bad, F_OK), EFAULT);
    ERR("faccessat", syscall(SYS_faccessat, AT_FDCWD, bad, F_OK), EFAULT);
    ERR("mkdir", syscall(SYS_mkdir, bad, 0755), EFAULT);
    ERR("rmdir", syscall(SYS_rmdir, bad), EFAULT);
    ERR("unlink", syscall(SYS_unlink, bad), EFAULT);
    ERR("chdir", syscall(SYS_chdir, bad), EFAULT);
    ERR("chmod", syscall(SYS_chmod, bad, 0644), EFAULT);
    ERR("chown", syscall(SYS_chown, bad, 0, 0), EFAULT);
    ERR("truncate", syscall(SYS_truncate, bad, 0), EFAULT);
    ERR("rename1", syscall(SYS_rename, bad, "g"), EFAULT);
    ERR("rename2", syscall(SYS_rename, "f", bad), EFAULT);
    ERR("link1", syscall(SYS_link, bad, "g"), EFAULT);
    ERR("link2", syscall(SYS_link, "f", bad), EFAULT);
    ERR("symlink1", syscall(SYS_symlink, bad, "g"), EFAULT);
    ERR("symlink2", syscall(SYS_symlink, "f", bad), EFAULT);
    char buf[64];
    ERR("readlink", syscall(SYS_readlink, bad, buf, sizeof buf), EFAULT);
    ERR("mknod", syscall(SYS_mknod, bad, S_IFIFO | 0644, 0), EFAULT);
    ERR("statfs", syscall(SYS_statfs, bad, buf), EFAULT);
    ERR("utimes", syscall(SYS_utimes, bad, NULL), EFAULT);
    ERR("utimensat", syscall(SYS_utimensat, AT_FDCWD, bad, NULL, 0), EFAULT);
    ERR("getxattr", syscall(SYS_getxattr, bad, "user.x", buf, sizeof buf), EFAULT);
    ERR("execve", syscall(SYS_execve, bad, NULL, NULL), EFAULT);
    ERR("creat", syscall(SYS_creat, bad, 0644), EFAULT);
    ERR("chroot", syscall(SYS_chroot, bad), EFAULT);
    ERR("statx", syscall(SYS_statx, AT_FDCWD, bad, 0, 0x7ff, buf), EFAULT);
    return t_finish();
}
