/* Runs a list of attribute operations and prints each result, one line each:
 *   make PATH | set PATH NAME VALUE | get PATH NAME | list PATH | chown PATH UID GID |
 *   owner PATH
 * (for the persistence tests, which look at a SEFS volume across runs). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    char buf[4096];
    for (int i = 1; i < argc;) {
        const char *op = argv[i];
        if (!strcmp(op, "make") && i + 1 < argc) {
            int fd = open(argv[i + 1], O_WRONLY | O_CREAT, 0644);
            printf("make %s: %s\n", argv[i + 1], fd < 0 ? strerror(errno) : "ok");
            if (fd >= 0)
                close(fd);
            i += 2;
        } else if (!strcmp(op, "set") && i + 3 < argc) {
            int r = setxattr(argv[i + 1], argv[i + 2], argv[i + 3], strlen(argv[i + 3]), 0);
            printf("set %s %s: %s\n", argv[i + 1], argv[i + 2], r ? strerror(errno) : "ok");
            i += 4;
        } else if (!strcmp(op, "get") && i + 2 < argc) {
            ssize_t n = getxattr(argv[i + 1], argv[i + 2], buf, sizeof buf - 1);
            if (n >= 0)
                buf[n] = 0;
            printf("get %s %s: %s\n", argv[i + 1], argv[i + 2], n < 0 ? strerror(errno) : buf);
            i += 3;
        } else if (!strcmp(op, "list") && i + 1 < argc) {
            ssize_t n = listxattr(argv[i + 1], buf, sizeof buf);
            printf("list %s:", argv[i + 1]);
            for (char *p = buf; n > 0 && p < buf + n; p += strlen(p) + 1)
                printf(" %s", p);
            printf("%s\n", n < 0 ? strerror(errno) : "");
            i += 2;
        } else if (!strcmp(op, "chown") && i + 3 < argc) {
            int r = chown(argv[i + 1], strtoul(argv[i + 2], NULL, 0),
                          strtoul(argv[i + 3], NULL, 0));
            printf("chown %s: %s\n", argv[i + 1], r ? strerror(errno) : "ok");
            i += 4;
        } else if (!strcmp(op, "owner") && i + 1 < argc) {
            struct stat st;
            if (lstat(argv[i + 1], &st))
                printf("owner %s: %s\n", argv[i + 1], strerror(errno));
            else
                printf("owner %s: %u %u\n", argv[i + 1], (unsigned)st.st_uid,
                       (unsigned)st.st_gid);
            i += 2;
        } else {
            fprintf(stderr, "usage: xattr_tool (make P | set P N V | get P N | list P | "
                            "chown P U G | owner P)...\n");
            return 2;
        }
    }
    return 0;
}
