/* Threads that allocate: glibc's malloc reserves an arena per thread (128 MiB, then 64 MiB,
 * inaccessible) and shares an existing one when the address-space limit refuses it. argv[1]
 * threads. Prints how many allocated. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_barrier_t all_started;

static void *work(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&all_started); /* every thread is alive at once: no arena to reuse */
    char *p = malloc(1000);
    if (p == NULL)
        return NULL;
    memset(p, 1, 1000);
    free(p);
    return p;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 4;
    pthread_t t[64];
    if (n > 64)
        n = 64;
    pthread_barrier_init(&all_started, NULL, (unsigned)n);
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, work, NULL) != 0)
            return 1;
    int ok = 0;
    for (int i = 0; i < n; i++) {
        void *r;
        pthread_join(t[i], &r);
        ok += r != NULL;
    }
    printf("%d threads allocated\n", ok);
    return ok == n ? 0 : 1;
}
