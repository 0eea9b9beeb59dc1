/* System V message queues: msgget, msgsnd/msgrcv in FIFO order, by type (exact, first of any
 * type, lowest type up to -n, MSG_EXCEPT), IPC_NOWAIT giving ENOMSG, MSG_NOERROR and E2BIG,
 * msgctl IPC_STAT counts, a blocked msgrcv woken by another process, EIDRM on removal. */
#include "common.h"
#include <sys/ipc.h>
#include <sys/msg.h>

#ifndef MSG_EXCEPT
#define MSG_EXCEPT 020000
#endif

struct msg {
    long type;
    char text[64];
};

static int snd(int q, long type, const char *text)
{
    struct msg m = {.type = type};
    strcpy(m.text, text);
    return msgsnd(q, &m, strlen(text) + 1, 0);
}

/* Receive and print "label: type text" or the errno. */
static void rcv(const char *label, int q, long type, int flags)
{
    struct msg m;
    memset(&m, 0, sizeof m);
    ssize_t n = msgrcv(q, &m, sizeof m.text, type, flags);
    if (n < 0)
        printf("%s: %s\n", label, errname(errno));
    else
        printf("%s: type %ld \"%s\" (%ld bytes)\n", label, m.type, m.text, (long)n);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    int q = OK("msgget", msgget(IPC_PRIVATE, IPC_CREAT | 0600));
    rcv("empty queue, IPC_NOWAIT", q, 0, IPC_NOWAIT);

    snd(q, 1, "one-a");
    snd(q, 2, "two-a");
    snd(q, 3, "three");
    snd(q, 1, "one-b");
    snd(q, 2, "two-b");
    struct msqid_ds ds;
    OK("IPC_STAT", msgctl(q, IPC_STAT, &ds));
    printf("messages %lu, bytes %lu, last sender is us %d\n", (unsigned long)ds.msg_qnum,
           (unsigned long)ds.__msg_cbytes, ds.msg_lspid == getpid());

    rcv("type 2", q, 2, IPC_NOWAIT);
    rcv("any type", q, 0, IPC_NOWAIT);
    rcv("lowest type <= 3", q, -3, IPC_NOWAIT);
    rcv("type other than 2", q, 2, IPC_NOWAIT | MSG_EXCEPT);
    rcv("type 7, none", q, 7, IPC_NOWAIT);
    rcv("any type", q, 0, IPC_NOWAIT);
    rcv("now empty", q, 0, IPC_NOWAIT);

    /* size limits */
    snd(q, 5, "a rather long message");
    struct msg m;
    ERR("receive into a short buffer", msgrcv(q, &m, 4, 0, IPC_NOWAIT), E2BIG);
    memset(&m, 0, sizeof m);
    ssize_t n = msgrcv(q, &m, 4, 0, IPC_NOWAIT | MSG_NOERROR);
    printf("MSG_NOERROR truncates: %ld \"%.4s\"\n", (long)n, m.text);
    ERR("send type 0", ({ struct msg z = {0, "x"}; msgsnd(q, &z, 2, 0); }), EINVAL);
    ERR("send negative size", msgsnd(q, &m, (size_t)-1, 0), EINVAL);

    /* a full queue: IPC_NOWAIT gives EAGAIN */
    OK("IPC_STAT", msgctl(q, IPC_STAT, &ds));
    ds.msg_qbytes = 100;
    OK("IPC_SET qbytes 100", msgctl(q, IPC_SET, &ds));
    struct msg big = {.type = 1};
    memset(big.text, 'b', sizeof big.text);
    CHECK(msgsnd(q, &big, 64, IPC_NOWAIT) == 0);
    ERR("send to a full queue, IPC_NOWAIT", msgsnd(q, &big, 64, IPC_NOWAIT), EAGAIN);
    CHECK(msgrcv(q, &m, sizeof m.text, 0, IPC_NOWAIT) == 64);

    /* a blocked receiver, woken by another process's send */
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        struct msg r;
        ssize_t k = msgrcv(q, &r, sizeof r.text, 9, 0);
        _exit(k > 0 && strcmp(r.text, "for nine") == 0 ? 0 : 1);
    }
    usleep(20000);
    snd(q, 8, "for eight");
    snd(q, 9, "for nine");
    printf("blocked receiver of type 9: %d\n", wait_child(c));
    rcv("type 8 left for us", q, 0, IPC_NOWAIT);
    OK("IPC_STAT", msgctl(q, IPC_STAT, &ds));
    printf("last receiver is us: %d, messages %lu\n", ds.msg_lrpid == getpid(), (unsigned long)ds.msg_qnum);

    /* removal wakes a waiter with EIDRM */
    int p[2];
    CHECK(pipe(p) == 0);
    c = fork();
    if (c == 0) {
        struct msg r;
        write(p[1], "r", 1);
        ssize_t k = msgrcv(q, &r, sizeof r.text, 0, 0);
        _exit(k < 0 && errno == EIDRM ? 0 : 1);
    }
    char b;
    CHECK(read(p[0], &b, 1) == 1); /* the child is about to wait */
    usleep(20000);
    OK("IPC_RMID", msgctl(q, IPC_RMID, NULL));
    printf("waiter got EIDRM: %d\n", wait_child(c));
    ERR("send after removal", snd(q, 1, "x"), EINVAL);

    /* keys */
    CHECK(write_file("keyfile", "k") == 0);
    key_t key = ftok("keyfile", 'M');
    int k1 = msgget(key, IPC_CREAT | IPC_EXCL | 0600);
    printf("keyed queue: %s, lookup same %d\n", k1 >= 0 ? "ok" : errname(errno), msgget(key, 0) == k1);
    ERR("IPC_EXCL again", msgget(key, IPC_CREAT | IPC_EXCL | 0600), EEXIST);
    msgctl(k1, IPC_RMID, NULL);
    ERR("lookup after removal", msgget(key, 0), ENOENT);
    return t_finish();
}
