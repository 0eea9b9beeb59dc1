/* Allocates and touches argv[1] MiB in 1 MiB blocks (argv[2], if given: also starts that many
 * threads that wait until all exist); says how far it got. Exit 0 if all of it worked. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_barrier_t all_there;

static void *waiter(void *arg)
{
    pthread_barrier_wait(&all_there);
    return arg;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    int want = atoi(argv[1]);
    for (int n = 0; n < want; n++) {
        char *p = malloc(1 << 20);
        if (!p) {
            printf("malloc failed after %d MiB: %s\n", n, strerror(errno));
            return 1;
        }
        memset(p, 1, 1 << 20);
    }
    printf("touched %d MiB\n", want);
    int threads = argc > 2 ? atoi(argv[2]) : 0;
    if (threads > 0) {
        pthread_t t[threads];
        pthread_barrier_init(&all_there, NULL, threads + 1);
        for (int i = 0; i < threads; i++) {
            int e = pthread_create(&t[i], NULL, waiter, NULL);
            if (e) {
                printf("pthread_create failed after %d threads: %s\n", i, strerror(e));
                return 1;
            }
        }
        pthread_barrier_wait(&all_there);
        for (int i = 0; i < threads; i++)
            pthread_join(t[i], NULL);
        printf("%d threads at once\n", threads);
    }
    return 0;
}
