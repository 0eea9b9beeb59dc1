/* Arguments that are a C int (a pid, a signal, a size counted in an int, an option, a mode)
 * are the low 32 bits of their register: Linux ignores the upper half, and so does the LibOS,
 * which decodes them by kind ("s32", "mode") before its handlers see them. */
#include "common.h"
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#define HI 0x5a5a000000000000UL

static long intarg(int v)
{
    return (long)(HI | (unsigned int)v);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(symlink("abcdefgh", "l") == 0);
    char buf[16];
    memset(buf, '-', sizeof buf);
    long n = OK("readlink", syscall(SYS_readlink, "l", buf, intarg(3)));
    printf("readlink: %ld %.8s\n", n, buf);
    n = OK("readlinkat", syscall(SYS_readlinkat, AT_FDCWD, "l", buf, intarg(5)));
    printf("readlinkat: %ld %.8s\n", n, buf);
    ERR("readlink size 0", syscall(SYS_readlink, "l", buf, intarg(0)), EINVAL);
    ERR("readlink size -1", syscall(SYS_readlink, "l", buf, intarg(-1)), EINVAL);
    OK("kill self 0", syscall(SYS_kill, intarg(getpid()), intarg(0)));
    OK("tgkill self 0", syscall(SYS_tgkill, intarg(getpid()), intarg(getpid()), intarg(0)));
    long groups = OK("getgroups count", syscall(SYS_getgroups, intarg(0), NULL));
    ERR("getgroups -1", syscall(SYS_getgroups, intarg(-1), NULL), EINVAL);
    CHECK(groups >= 0);
    SHOW("prctl PR_GET_KEEPCAPS", syscall(SYS_prctl, intarg(PR_GET_KEEPCAPS), 0, 0, 0, 0));
    OK("setpriority", syscall(SYS_setpriority, intarg(PRIO_PROCESS), intarg(0),
                              intarg(getpriority(PRIO_PROCESS, 0))));
    umask(022);
    CHECK(write_file("f", "x") == 0);
    OK("access", syscall(SYS_access, "f", intarg(R_OK)));
    OK("faccessat", syscall(SYS_faccessat, AT_FDCWD, "f", intarg(R_OK)));
    ERR("access bad mode", syscall(SYS_access, "f", intarg(8)), EINVAL);
    OK("chmod", syscall(SYS_chmod, "f", intarg(0600)));
    struct stat st;
    CHECK(stat("f", &st) == 0);
    printf("chmod mode: %o\n", st.st_mode & 07777);
    OK("mkdir", syscall(SYS_mkdir, "d", intarg(0750)));
    CHECK(stat("d", &st) == 0);
    printf("mkdir mode: %o\n", st.st_mode & 07777);
    long fd = OK("open create", syscall(SYS_open, "g", O_CREAT | O_WRONLY, intarg(0640)));
    if (fd >= 0)
        close((int)fd);
    CHECK(stat("g", &st) == 0);
    printf("open mode: %o\n", st.st_mode & 07777);
    /* ids are uid_t, 32 bits: (uid_t)-1 leaves one unchanged */
    OK("chown", syscall(SYS_chown, "g", intarg(getuid()), intarg(-1)));
    OK("setresuid unchanged", syscall(SYS_setresuid, intarg(-1), intarg(-1), intarg(-1)));
    OK("setuid own", syscall(SYS_setuid, intarg(getuid())));
    OK("setgid own", syscall(SYS_setgid, intarg(getgid())));
    printf("same ids: %d\n", getuid() == geteuid());
    return t_finish();
}
