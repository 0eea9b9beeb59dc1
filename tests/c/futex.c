/* futex: WAIT/WAKE (private and shared between processes), EAGAIN on a value mismatch,
 * ETIMEDOUT (relative and WAIT_BITSET absolute), WAKE counts, REQUEUE, and robust futexes:
 * a hand-built robust list marks a dead owner's lock FUTEX_OWNER_DIED, and robust pthread
 * mutexes report EOWNERDEAD after their owner thread or process dies. */
#include "common.h"
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>

/* From the kernel's futex ABI (musl has no <linux/futex.h>). */
#define F_WAIT 0
#define F_WAKE 1
#define F_REQUEUE 3
#define F_WAIT_BITSET 9
#define F_PRIVATE 128
#define F_CLOCK_REALTIME 256
#define F_BITSET_ANY 0xffffffffu
#define F_OWNER_DIED 0x40000000u
#define F_TID_MASK 0x3fffffffu

struct rlist {
    struct rlist *next;
};
struct rlist_head {
    struct rlist list;
    long futex_offset;
    struct rlist *list_op_pending;
};

static long futex(uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts,
                  uint32_t *uaddr2, uint32_t val3)
{
    return syscall(SYS_futex, uaddr, op, val, ts, uaddr2, val3);
}

static uint32_t word;
static uint32_t word2;
static int woken;

static void *wait_on_word(void *arg)
{
    (void)arg;
    while (__atomic_load_n(&word, __ATOMIC_SEQ_CST) == 0)
        futex(&word, F_WAIT | F_PRIVATE, 0, NULL, NULL, 0);
    __atomic_add_fetch(&woken, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* How many threads sleep on w, without waking them: requeue them all to a spare word and back
 * (REQUEUE returns how many it moved). */
static int sleepers(uint32_t *w, int flags)
{
    static uint32_t spare;
    long n = futex(w, F_REQUEUE | flags, 0, (const struct timespec *)(long)INT_MAX, &spare, 0);
    futex(&spare, F_REQUEUE | flags, 0, (const struct timespec *)(long)INT_MAX, w, 0);
    return (int)n;
}

/* Wait (up to ~2 s) until n threads sleep on w. */
static int await_sleepers(uint32_t *w, int flags, int n)
{
    for (int i = 0; i < 4000; i++) {
        if (sleepers(w, flags) >= n)
            return 1;
        usleep(500);
    }
    return 0;
}

static pthread_mutex_t *robust;

static void *lock_and_die(void *arg)
{
    (void)arg;
    pthread_mutex_lock(robust);
    return NULL; /* exits holding the lock */
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct timespec ts = {0, 30 * 1000000};

    word = 1;
    ERR("wait with a stale value", futex(&word, F_WAIT, 0, NULL, NULL, 0), EAGAIN);
    ERR("private wait with a stale value", futex(&word, F_WAIT | F_PRIVATE, 0, NULL, NULL, 0),
        EAGAIN);
    long t0 = mono_ms();
    ERR("wait with a timeout", futex(&word, F_WAIT, 1, &ts, NULL, 0), ETIMEDOUT);
    printf("waited the timeout: %d\n", mono_ms() - t0 >= 29);
    struct timespec abs;
    clock_gettime(CLOCK_MONOTONIC, &abs);
    abs.tv_nsec += 20 * 1000000;
    if (abs.tv_nsec >= 1000000000) {
        abs.tv_sec++;
        abs.tv_nsec -= 1000000000;
    }
    ERR("WAIT_BITSET absolute monotonic",
        futex(&word, F_WAIT_BITSET | F_PRIVATE, 1, &abs, NULL, F_BITSET_ANY), ETIMEDOUT);
    struct timespec past = {1, 0};
    ERR("WAIT_BITSET realtime in the past",
        futex(&word, F_WAIT_BITSET | F_CLOCK_REALTIME, 1, &past, NULL, F_BITSET_ANY), ETIMEDOUT);
    ERR("bad timeout", futex(&word, F_WAIT, 1, &(struct timespec){0, 2000000000}, NULL, 0), EINVAL);
    ERR("WAIT_BITSET with an empty bitset", futex(&word, F_WAIT_BITSET, 1, NULL, NULL, 0), EINVAL);
    ERR("unaligned address", futex((uint32_t *)((char *)&word + 1), F_WAIT, 1, &ts, NULL, 0), EINVAL);
    ERR("unknown op", futex(&word, 99, 0, NULL, NULL, 0), ENOSYS);
    printf("wake with no waiters: %ld\n", futex(&word, F_WAKE, 1, NULL, NULL, 0));

    /* four threads asleep on a word: wake 1, then the rest */
    word = 0;
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, wait_on_word, NULL) == 0);
    printf("four asleep: %d\n", await_sleepers(&word, F_PRIVATE, 4));
    __atomic_store_n(&word, 1, __ATOMIC_SEQ_CST);
    printf("wake 1: %ld\n", futex(&word, F_WAKE | F_PRIVATE, 1, NULL, NULL, 0));
    printf("wake all: %ld\n", futex(&word, F_WAKE | F_PRIVATE, INT_MAX, NULL, NULL, 0));
    for (int i = 0; i < 4; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    printf("threads done: %d\n", woken);

    /* REQUEUE: move the sleepers to another word, wake them there */
    word = 0;
    woken = 0;
    for (int i = 0; i < 3; i++)
        CHECK(pthread_create(&t[i], NULL, wait_on_word, NULL) == 0);
    printf("three asleep: %d\n", await_sleepers(&word, F_PRIVATE, 3));
    printf("requeue 0 woken, 2 moved: %ld\n",
           futex(&word, F_REQUEUE | F_PRIVATE, 0, (const struct timespec *)2L, &word2, 0));
    __atomic_store_n(&word, 1, __ATOMIC_SEQ_CST);
    /* woken on word2, they recheck word and leave */
    printf("woken on the second word: %ld\n", futex(&word2, F_WAKE | F_PRIVATE, INT_MAX, NULL, NULL, 0));
    printf("woken on the first word (the one left): %ld\n", futex(&word, F_WAKE | F_PRIVATE, INT_MAX, NULL, NULL, 0));
    for (int i = 0; i < 3; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    printf("threads done: %d\n", woken);

    /* a shared futex between processes */
    uint32_t *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(shared != MAP_FAILED);
    shared[0] = 0;
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        while (__atomic_load_n(&shared[0], __ATOMIC_SEQ_CST) == 0)
            futex(&shared[0], F_WAIT, 0, NULL, NULL, 0);
        _exit(shared[0] == 5 ? 0 : 1);
    }
    printf("child asleep on the shared word: %d\n", await_sleepers(&shared[0], 0, 1));
    printf("private wake misses it: %ld\n", futex(&shared[0], F_WAKE | F_PRIVATE, 1, NULL, NULL, 0));
    __atomic_store_n(&shared[0], 5, __ATOMIC_SEQ_CST);
    printf("shared wake: %ld\n", futex(&shared[0], F_WAKE, 1, NULL, NULL, 0));
    printf("child: %d\n", wait_child(c));

    /* robust list by hand: a child holding a lock dies, the kernel marks it OWNER_DIED */
    struct rlist_head probe;
    size_t len = 0;
    struct rlist_head *headp = &probe;
    OK("get_robust_list", syscall(SYS_get_robust_list, 0, &headp, &len));
    printf("robust list head size: %zu\n", len);
    ERR("set_robust_list bad length", syscall(SYS_set_robust_list, &probe, 1), EINVAL);
    struct rlock {
        struct rlist link;
        uint32_t lock;
    } *rl = (struct rlock *)(shared + 16);
    c = fork();
    if (c == 0) {
        static struct rlist_head head;
        head.futex_offset = (long)offsetof(struct rlock, lock) - (long)offsetof(struct rlock, link);
        head.list.next = &rl->link;
        head.list_op_pending = NULL;
        rl->link.next = &head.list;
        rl->lock = (uint32_t)syscall(SYS_gettid);
        if (syscall(SYS_set_robust_list, &head, sizeof head) != 0)
            _exit(2);
        _exit(0); /* dies holding rl->lock */
    }
    printf("child with a robust lock: %d\n", wait_child(c));
    printf("lock word after owner death: %s, tid cleared: %d\n",
           rl->lock & F_OWNER_DIED ? "OWNER_DIED" : "unchanged", (rl->lock & F_TID_MASK) == 0);

    /* robust pthread mutexes: owner thread exits holding it */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    CHECK(pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST) == 0);
    CHECK(pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED) == 0);
    robust = (pthread_mutex_t *)(shared + 64);
    CHECK(pthread_mutex_init(robust, &ma) == 0);
    pthread_t o;
    CHECK(pthread_create(&o, NULL, lock_and_die, NULL) == 0);
    CHECK(pthread_join(o, NULL) == 0);
    int r = pthread_mutex_lock(robust);
    printf("lock after owner thread died: %s\n", errname(r));
    printf("consistent: %s\n", errname(pthread_mutex_consistent(robust)));
    printf("unlock: %s\n", errname(pthread_mutex_unlock(robust)));
    printf("lock again: %s\n", errname(pthread_mutex_lock(robust)));
    pthread_mutex_unlock(robust);

    /* owner process dies holding it, while the parent is blocked on it */
    int p[2];
    CHECK(pipe(p) == 0);
    c = fork();
    if (c == 0) {
        pthread_mutex_lock(robust);
        write(p[1], "l", 1);
        usleep(30000);
        _exit(0);
    }
    char b;
    CHECK(read(p[0], &b, 1) == 1);
    r = pthread_mutex_lock(robust); /* blocks until the child dies */
    printf("lock after owner process died: %s\n", errname(r));
    printf("child: %d\n", wait_child(c));
    /* not made consistent: unlocking makes it unrecoverable */
    pthread_mutex_unlock(robust);
    printf("lock after unlock without consistent: %s\n", errname(pthread_mutex_lock(robust)));
    return t_finish();
}
