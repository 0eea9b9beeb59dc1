/* Thread-local storage: __thread variables (initialised and zeroed, scalars, arrays and
 * structs) are private to each thread and start from their initial values; pthread keys with
 * destructors; a forked child gets a copy of the forking thread's values. */
#include "common.h"
#include <pthread.h>

#define NTHREADS 6

static __thread int t_init = 7;
static __thread long t_zero;
static __thread char t_name[32] = "initial";
static __thread struct {
    int a;
    double b;
    int arr[4];
} t_struct = {1, 2.5, {3, 4, 5, 6}};
static __thread int t_big[1024]; /* a larger zeroed block */

static pthread_key_t key;
static int destructor_calls;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t barrier;

static void destructor(void *v)
{
    pthread_mutex_lock(&mu);
    destructor_calls += (int)(long)v;
    pthread_mutex_unlock(&mu);
}

struct result {
    int saw_initial;
    int kept_own;
    const void *addr;
};

static void *worker(void *arg)
{
    long id = (long)arg;
    struct result *r = calloc(1, sizeof *r);
    int big_zero = 1;
    for (int i = 0; i < 1024; i++)
        big_zero &= t_big[i] == 0;
    r->saw_initial = t_init == 7 && t_zero == 0 && strcmp(t_name, "initial") == 0 &&
                     t_struct.a == 1 && t_struct.b == 2.5 && t_struct.arr[3] == 6 && big_zero &&
                     pthread_getspecific(key) == NULL;
    r->addr = &t_init;
    t_init = 100 + (int)id;
    t_zero = id * 1000;
    snprintf(t_name, sizeof t_name, "thread-%ld", id);
    t_struct.arr[2] = (int)id;
    for (int i = 0; i < 1024; i++)
        t_big[i] = (int)id;
    pthread_setspecific(key, (void *)id);
    /* every thread has written before any checks its own values */
    pthread_barrier_wait(&barrier);
    char want[32];
    snprintf(want, sizeof want, "thread-%ld", id);
    int big_own = 1;
    for (int i = 0; i < 1024; i++)
        big_own &= t_big[i] == (int)id;
    r->kept_own = t_init == 100 + id && t_zero == id * 1000 && strcmp(t_name, want) == 0 &&
                  t_struct.arr[2] == id && big_own && pthread_getspecific(key) == (void *)id;
    return r;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(pthread_key_create(&key, destructor) == 0);
    pthread_setspecific(key, (void *)1000L);
    t_init = 1;
    strcpy(t_name, "main");
    t_big[5] = 55;
    pthread_barrier_init(&barrier, NULL, NTHREADS);
    pthread_t t[NTHREADS];
    for (long i = 0; i < NTHREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(i + 1)) == 0);
    int initial = 0, own = 0, distinct = 1;
    const void *addrs[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        struct result *r;
        CHECK(pthread_join(t[i], (void **)&r) == 0);
        initial += r->saw_initial;
        own += r->kept_own;
        addrs[i] = r->addr;
        distinct &= r->addr != &t_init;
        free(r);
    }
    for (int i = 0; i < NTHREADS; i++)
        for (int j = 0; j < i; j++)
            distinct &= addrs[i] != addrs[j];
    printf("threads saw initial values: %d of %d\n", initial, NTHREADS);
    printf("threads kept their own values: %d of %d\n", own, NTHREADS);
    printf("distinct addresses: %d\n", distinct);
    printf("main unchanged: %d %s %d %ld\n", t_init, t_name, t_big[5],
           (long)pthread_getspecific(key));
    printf("destructor sum: %d\n", destructor_calls);

    /* a forked child starts with the forking thread's values, and its changes stay its own */
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        int ok = t_init == 1 && strcmp(t_name, "main") == 0 && t_big[5] == 55;
        t_init = 2;
        _exit(ok ? 0 : 1);
    }
    printf("child copy: %d, parent after: %d\n", wait_child(c), t_init);
    CHECK(pthread_key_delete(key) == 0);
    return t_finish();
}
