/* For `occlum gdb` tests (tests/integration/test_gdb.py): two threads meeting a breakpoint. */
#include <pthread.h>
#include <stdio.h>

static int shared;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg) {
    int mine = *(int *)arg;
    pthread_mutex_lock(&lock);
    shared += mine; /* WORKER LINE */
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(void) {
    pthread_t t[2];
    int v[2] = {3, 4};
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, worker, &v[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("shared %d\n", shared);
    return 0;
}
