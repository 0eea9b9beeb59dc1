/* System V semaphores: semget of a set, semctl SETVAL/GETVAL/SETALL/GETALL/GETPID/GETNCNT/
 * IPC_STAT/IPC_RMID, semop increments and decrements, IPC_NOWAIT giving EAGAIN, a blocked
 * semop woken by another process, wait-for-zero, atomic multi-operation semop, SEM_UNDO
 * reverting a dead process's changes, semtimedop's EAGAIN on timeout, EIDRM for a waiter. */
#include "common.h"
#include <sys/ipc.h>
#include <sys/sem.h>

union semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
};

static int op(int id, unsigned short num, short delta, short flags)
{
    struct sembuf b = {num, delta, flags};
    return semop(id, &b, 1);
}

static int val(int id, int num)
{
    return semctl(id, num, GETVAL);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    int id = OK("semget 3 semaphores", semget(IPC_PRIVATE, 3, IPC_CREAT | 0600));
    struct semid_ds ds;
    OK("IPC_STAT", semctl(id, 0, IPC_STAT, (union semun){.buf = &ds}));
    printf("nsems %lu mode %o\n", (unsigned long)ds.sem_nsems, ds.sem_perm.mode & 0777);
    printf("initial values: %d %d %d\n", val(id, 0), val(id, 1), val(id, 2));

    OK("SETVAL 0 = 2", semctl(id, 0, SETVAL, (union semun){.val = 2}));
    OK("decrement by 1", op(id, 0, -1, 0));
    OK("decrement by 1 again", op(id, 0, -1, 0));
    ERR("decrement at zero, IPC_NOWAIT", op(id, 0, -1, IPC_NOWAIT), EAGAIN);
    ERR("wait-for-zero on a nonzero one, IPC_NOWAIT",
        ({ semctl(id, 1, SETVAL, (union semun){.val = 1}); op(id, 1, 0, IPC_NOWAIT); }), EAGAIN);
    OK("wait-for-zero on zero", op(id, 0, 0, 0));
    printf("GETPID is us: %d\n", semctl(id, 0, GETPID) == getpid());

    unsigned short all[3] = {5, 0, 7}, got[3] = {0};
    OK("SETALL", semctl(id, 0, SETALL, (union semun){.array = all}));
    OK("GETALL", semctl(id, 0, GETALL, (union semun){.array = got}));
    printf("values: %u %u %u\n", got[0], got[1], got[2]);

    /* several operations in one semop are all-or-nothing */
    struct sembuf two[2] = {{0, -1, IPC_NOWAIT}, {1, -1, IPC_NOWAIT}};
    ERR("atomic pair, second would block", semop(id, two, 2), EAGAIN);
    printf("first untouched: %d\n", val(id, 0));
    two[1].sem_op = 1;
    OK("atomic pair", semop(id, two, 2));
    printf("after the pair: %d %d\n", val(id, 0), val(id, 1));

    /* a blocked decrement is woken by another process's increment */
    semctl(id, 2, SETVAL, (union semun){.val = 0});
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        long t0 = mono_ms();
        int r = op(id, 2, -1, 0);
        _exit(r == 0 && mono_ms() - t0 >= 10 ? 0 : 1);
    }
    int waiting = 0;
    for (int i = 0; i < 2000 && !waiting; i++) {
        int k = semctl(id, 2, GETNCNT);
        if (k < 0)
            break;
        waiting = k == 1;
        if (!waiting)
            usleep(1000);
    }
    usleep(20000);
    printf("GETNCNT saw the waiter: %d\n", waiting);
    OK("increment", op(id, 2, 1, 0));
    printf("waiter: %d, value %d\n", wait_child(c), val(id, 2));

    /* wait-for-zero, released when the value reaches zero */
    semctl(id, 2, SETVAL, (union semun){.val = 1});
    c = fork();
    if (c == 0)
        _exit(op(id, 2, 0, 0) == 0 ? 0 : 1);
    waiting = 0;
    for (int i = 0; i < 2000 && !waiting; i++) {
        int k = semctl(id, 2, GETZCNT);
        if (k < 0)
            break;
        waiting = k == 1;
        if (!waiting)
            usleep(1000);
    }
    printf("GETZCNT saw the waiter: %d\n", waiting);
    op(id, 2, -1, 0);
    printf("zero waiter: %d\n", wait_child(c));

    /* SEM_UNDO: a process's adjustments are undone when it exits */
    semctl(id, 0, SETVAL, (union semun){.val = 3});
    c = fork();
    if (c == 0) {
        op(id, 0, -2, SEM_UNDO);
        op(id, 1, 4, SEM_UNDO);
        _exit(val(id, 0) == 1 ? 0 : 1);
    }
    printf("child took 2 with SEM_UNDO: %d\n", wait_child(c));
    printf("after its exit: %d %d\n", val(id, 0), val(id, 1));
    c = fork();
    if (c == 0) {
        op(id, 0, -2, 0);
        _exit(0);
    }
    wait_child(c);
    printf("without SEM_UNDO it stays: %d\n", val(id, 0));

    /* semtimedop times out */
    struct sembuf dec = {0, -5, 0};
    struct timespec ts = {0, 30 * 1000000};
    long t0 = mono_ms();
    ERR("semtimedop timeout", semtimedop(id, &dec, 1, &ts), EAGAIN);
    printf("waited the timeout: %d\n", mono_ms() - t0 >= 29);

    /* errors */
    ERR("semnum out of range", op(id, 3, 1, 0), EFBIG);
    ERR("GETVAL out of range", semctl(id, 5, GETVAL), EINVAL);
    ERR("SETVAL too large", semctl(id, 0, SETVAL, (union semun){.val = 40000}), ERANGE);
    ERR("semget too many", semget(IPC_PRIVATE, 100000, IPC_CREAT | 0600), EINVAL);
    ERR("semop on a bad id", op(0x7ffffff, 0, 1, 0), EINVAL);

    /* IPC_RMID wakes a waiter with EIDRM */
    semctl(id, 2, SETVAL, (union semun){.val = 0});
    c = fork();
    if (c == 0) {
        int r = op(id, 2, -1, 0);
        _exit(r < 0 && errno == EIDRM ? 0 : 1);
    }
    for (int i = 0; i < 2000 && semctl(id, 2, GETNCNT) == 0; i++)
        usleep(1000);
    OK("IPC_RMID", semctl(id, 0, IPC_RMID));
    printf("waiter got EIDRM: %d\n", wait_child(c));
    ERR("GETVAL after removal", semctl(id, 0, GETVAL), EINVAL);
    return t_finish();
}
