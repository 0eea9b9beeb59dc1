/* System V shared memory: shmget (IPC_PRIVATE, a key with IPC_CREAT|IPC_EXCL), shmat shared
 * between a parent and a child, shmctl IPC_STAT (size, attach count, mode), SHM_RDONLY, shmdt,
 * IPC_RMID with the segment living on until the last detach, and the errors. */
#include "common.h"
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    int id = OK("shmget IPC_PRIVATE", shmget(IPC_PRIVATE, 10000, IPC_CREAT | 0600));
    struct shmid_ds ds;
    OK("IPC_STAT", shmctl(id, IPC_STAT, &ds));
    printf("size %zu, attached %lu, mode %o, creator is us %d\n", (size_t)ds.shm_segsz,
           (unsigned long)ds.shm_nattch, ds.shm_perm.mode & 0777, ds.shm_cpid == getpid());

    char *m = shmat(id, NULL, 0);
    if (m == (void *)-1) {
        printf("shmat: %s\n", errname(errno));
        return t_finish() | 1;
    }
    printf("zero-filled: %d\n", m[0] == 0 && m[9999] == 0);
    strcpy(m, "parent wrote");
    shmctl(id, IPC_STAT, &ds);
    printf("attached after shmat: %lu\n", (unsigned long)ds.shm_nattch);

    /* a child inherits the attachment and writes back */
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        int ok = strcmp(m, "parent wrote") == 0;
        strcpy(m + 5000, "child wrote");
        /* and attaches a second time at another address */
        char *m2 = shmat(id, NULL, 0);
        ok &= m2 != (void *)-1 && strcmp(m2 + 5000, "child wrote") == 0;
        _exit(ok ? 0 : 1);
    }
    printf("child: %d, parent sees: %s\n", wait_child(c), m + 5000);
    shmctl(id, IPC_STAT, &ds);
    printf("attached after the child's exit: %lu, last attacher was the child %d\n",
           (unsigned long)ds.shm_nattch, ds.shm_lpid == c);

    /* read-only attachment: a write faults */
    char *ro = shmat(id, NULL, SHM_RDONLY);
    CHECK(ro != (void *)-1);
    printf("read-only sees: %s\n", ro);
    c = fork();
    if (c == 0) {
        ro[0] = 'x';
        _exit(0);
    }
    printf("write to SHM_RDONLY: child status %d\n", wait_child(c));
    OK("shmdt read-only", shmdt(ro));
    ERR("shmdt again", shmdt(ro), EINVAL);

    /* a key: IPC_CREAT|IPC_EXCL, lookup, EEXIST, ENOENT */
    CHECK(write_file("keyfile", "k") == 0);
    key_t key = ftok("keyfile", (int)(getpid() & 0xff) | 1);
    int kid = shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0640);
    printf("shmget key IPC_CREAT|IPC_EXCL: %s\n", kid >= 0 ? "ok" : errname(errno));
    printf("lookup by key is the same id: %d\n", shmget(key, 0, 0) == kid);
    ERR("IPC_EXCL again", shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0640), EEXIST);
    ERR("bigger than the segment", shmget(key, 8192, 0), EINVAL);
    OK("remove the keyed one", shmctl(kid, IPC_RMID, NULL));
    ERR("lookup after removal", shmget(key, 0, 0), ENOENT);

    /* IPC_SET changes the mode */
    shmctl(id, IPC_STAT, &ds);
    ds.shm_perm.mode = 0640;
    OK("IPC_SET", shmctl(id, IPC_SET, &ds));
    shmctl(id, IPC_STAT, &ds);
    printf("mode after IPC_SET: %o\n", ds.shm_perm.mode & 0777);

    /* IPC_RMID while attached: still usable, gone after the last detach */
    OK("IPC_RMID while attached", shmctl(id, IPC_RMID, NULL));
    strcpy(m, "after rmid");
    printf("still mapped: %s\n", m);
    shmctl(id, IPC_STAT, &ds);
    printf("marked for destruction: %d\n", (ds.shm_perm.mode & SHM_DEST) != 0);
    /* Linux still lets a process attach a segment marked for destruction */
    char *again = shmat(id, NULL, 0);
    printf("attach after IPC_RMID: %s\n", again == (void *)-1 ? errname(errno) : again);
    OK("shmdt", shmdt(m));
    if (again != (void *)-1)
        OK("shmdt the last", shmdt(again));
    ERR("IPC_STAT after the last detach", shmctl(id, IPC_STAT, &ds), EINVAL);

    /* errors */
    ERR("shmget size 0 for a new segment", shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600), EINVAL);
    ERR("shmat a bad id", (long)shmat(0x7ffffff, NULL, 0), EINVAL);
    ERR("shmctl bad command", shmctl(0x7ffffff, 12345, &ds), EINVAL);
    ERR("shmdt not attached", shmdt((void *)0x10000), EINVAL);
    return t_finish();
}
