/* Round trip of one system call in a loop: prints "<ns per call>".
 * usage: syscall_loop uname|faccessat|getppid [iterations] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "uname";
    long n = argc > 2 ? atol(argv[2]) : 100000;
    struct utsname u;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        if (strcmp(which, "uname") == 0)
            syscall(SYS_uname, &u);
        else if (strcmp(which, "faccessat") == 0)
            syscall(SYS_faccessat, AT_FDCWD, "/", F_OK);
        else
            syscall(SYS_getppid);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n;
    printf("%.1f\n", ns);
    return 0;
}
