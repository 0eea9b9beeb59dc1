/* A fork bomb, a thread bomb or a memory hog (argv[1]: fork, thread, memory): grows until the
 * kernel refuses, says after how much and with which errno, then exits 0. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *sleeper(void *arg)
{
    pause();
    return arg;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    int n = 0;
    if (strcmp(argv[1], "fork") == 0) {
        for (; n < 100000; n++) {
            pid_t c = fork();
            if (c < 0) {
                printf("fork refused after %d: %s\n", n, strerror(errno));
                return 0;
            }
            if (c == 0) {
                pause();
                _exit(0);
            }
        }
    } else if (strcmp(argv[1], "thread") == 0) {
        pthread_t t;
        for (; n < 100000; n++) {
            int e = pthread_create(&t, NULL, sleeper, NULL);
            if (e) {
                printf("pthread_create refused after %d: %s\n", n, strerror(e));
                return 0;
            }
        }
    } else {
        for (; n < 1000000; n++) {
            char *p = malloc(1 << 20);
            if (!p) {
                /* a program that cannot get its memory fails: the LibOS looks at a failing
                 * exit's address space, to name the key to raise */
                printf("malloc refused after %d MiB: %s\n", n, strerror(errno));
                return 2;
            }
            memset(p, 1, 1 << 20);
        }
    }
    printf("never refused\n");
    return 1;
}
