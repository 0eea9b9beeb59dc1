/* pthreads: create/join, mutex and condition variable, thread-local storage, shared fds. */
#include "common.h"
#include <pthread.h>
#include <sys/syscall.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long counter;
static int ready;
static __thread int tls_value = 7;

static void *adder(void *arg)
{
    for (int i = 0; i < 100000; i++) {
        pthread_mutex_lock(&mu);
        counter++;
        pthread_mutex_unlock(&mu);
    }
    tls_value = (int)(long)arg;
    return (void *)(long)(tls_value * 10);
}

static void *waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    while (!ready)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return (void *)(long)(syscall(SYS_gettid) != getpid());
}

static void *opener(void *arg)
{
    int fd = open("from-thread", O_WRONLY | O_CREAT, 0644);
    write(fd, "t", 1);
    *(int *)arg = fd;
    return NULL;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    pthread_t t[8];
    for (long i = 0; i < 8; i++)
        CHECK(pthread_create(&t[i], NULL, adder, (void *)(i + 1)) == 0);
    long sum = 0;
    for (int i = 0; i < 8; i++) {
        void *ret;
        CHECK(pthread_join(t[i], &ret) == 0);
        sum += (long)ret;
    }
    printf("counter: %ld, sum of returns: %ld, main tls: %d\n", counter, sum, tls_value);

    pthread_t w;
    CHECK(pthread_create(&w, NULL, waiter, NULL) == 0);
    usleep(20000);
    pthread_mutex_lock(&mu);
    ready = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    void *ret;
    CHECK(pthread_join(w, &ret) == 0);
    printf("thread has own tid: %ld\n", (long)ret);

    int fd = -1;
    pthread_t o;
    CHECK(pthread_create(&o, NULL, opener, &fd) == 0);
    CHECK(pthread_join(o, NULL) == 0);
    printf("fd opened by thread usable by main: %d\n", write(fd, "m", 1) == 1);
    close(fd);
    printf("file: %s\n", read_file("from-thread"));

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    CHECK(pthread_create(&o, &attr, adder, (void *)1L) == 0);
    pthread_attr_destroy(&attr);
    usleep(100000);
    printf("detached thread ran: %d\n", counter == 900000);
    return t_finish();
}
