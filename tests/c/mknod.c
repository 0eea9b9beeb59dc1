/* mknod: mode 0 and S_IFREG make a regular file, S_IFIFO a FIFO, in Linux's order of errors
 * (type, then name, then the right to make a device: EPERM without CAP_MKNOD). */
#include "common.h"
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <linux/capability.h>
int main(int argc, char **argv) {
    scratch_enter(argc, argv);
    struct stat st;
    OK("mknod reg", mknod("reg", S_IFREG | 0640, 0));
    if (stat("reg", &st) == 0) printf("reg: %s %o size %ld\n", ftype(st.st_mode), st.st_mode & 07777, (long)st.st_size);
    OK("mknod zero", mknod("zero", 0600, 0));
    if (stat("zero", &st) == 0) printf("zero: %s %o\n", ftype(st.st_mode), st.st_mode & 07777);
    OK("mknod fifo", mknod("fifo", S_IFIFO | 0644, 0));
    if (stat("fifo", &st) == 0) printf("fifo: %s %o\n", ftype(st.st_mode), st.st_mode & 07777);
    OK("mknodat fifo", mknodat(AT_FDCWD, "fifo2", S_IFIFO | 0600, 0));
    OK("mkfifo", mkfifo("fifo3", 0600));
    if (stat("fifo3", &st) == 0) printf("fifo3: %s %o\n", ftype(st.st_mode), st.st_mode & 07777);
    ERR("exists reg", mknod("reg", S_IFREG | 0644, 0), EEXIST);
    ERR("exists fifo", mknod("fifo", S_IFIFO | 0644, 0), EEXIST);
    ERR("exists dir", mknod(".", S_IFIFO | 0644, 0), EEXIST);
    ERR("bad type2", mknod("x", 0170000 | 0644, 0), EINVAL);
    ERR("no parent", mknod("nodir/x", S_IFREG | 0644, 0), ENOENT);
    ERR("parent is file", mknod("reg/x", S_IFREG | 0644, 0), ENOTDIR);
    ERR("bad type", mknod("dir", S_IFDIR | 0755, 0), EPERM);
    /* a device node: only with CAP_MKNOD, which a program inside never has; natively the
     * child drops every capability first */
    ERR("chr exists", mknod("reg", S_IFCHR | 0644, makedev(1, 3)), EEXIST);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct d[2];
        memset(d, 0, sizeof d);
        if (syscall(SYS_capset, &h, d) != 0)
            printf("capset: %s\n", errname(errno));
        ERR("chr", mknod("chr", S_IFCHR | 0644, makedev(1, 3)), EPERM);
        ERR("blk", mknod("blk", S_IFBLK | 0644, makedev(7, 0)), EPERM);
        ERR("chr exists", mknod("reg", S_IFCHR | 0644, makedev(1, 3)), EEXIST);
        ERR("chr no parent", mknod("nodir/chr", S_IFCHR | 0644, makedev(1, 3)), ENOENT);
        fflush(stdout);
        _exit(t_failures ? 1 : 0);
    }
    printf("child: %d\n", wait_child(pid));
    /* a regular file made by mknod is an ordinary file: write, read back */
    OK("write", write_file("zero", "data"));
    const char *s = read_file("zero");
    printf("read: %s\n", s ? s : "(null)");
    /* a FIFO made by mknod carries data between a reader and a writer */
    int r = open("fifo", O_RDONLY | O_NONBLOCK);
    int w = open("fifo", O_WRONLY | O_NONBLOCK);
    CHECK(r >= 0 && w >= 0);
    OK("fifo write", write(w, "hi", 2));
    char buf[4] = {0};
    OK("fifo read", read(r, buf, sizeof buf));
    printf("fifo got: %s\n", buf);
    close(r); close(w);
    return t_finish();
}
