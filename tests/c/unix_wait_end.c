/* How a blocking accept or recvfrom with an address on a Unix socket ends, beside the cases of
 * unix_accept_wait.c: its process killed while it waits (the socket is then closed: its name
 * can be bound again), a signal the thread blocks (the wait goes on), and several waits at
 * once, one of them ended by SO_RCVTIMEO while another goes on. */
#include "common.h"
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

static char prefix[64];

static socklen_t abstract_of(struct sockaddr_un *a, const char *name)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "%s-%s", prefix, name);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a->sun_path + 1));
}

static int bound_socket(int type, const char *name)
{
    struct sockaddr_un a;
    socklen_t al = abstract_of(&a, name);
    int s = socket(AF_UNIX, type, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&a, al) != 0)
        return -1;
    if (type == SOCK_STREAM && listen(s, 4) != 0)
        return -1;
    return s;
}

/* A child that says it is ready on `ready` and waits in accept (stream) or recvfrom (dgram)
 * on s with an address. Its exit status: 0 if the call succeeded, else its errno, 200 and
 * up for a failure before it; with `min_ms`, 201 if it ended sooner. */
static pid_t waiter(int s, int ready, int type, long min_ms)
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        struct sockaddr_un peer;
        socklen_t pl = sizeof peer;
        char b[8];
        long start = mono_ms();
        if (write(ready, "r", 1) != 1)
            _exit(200);
        long r = type == SOCK_STREAM ? accept(s, (struct sockaddr *)&peer, &pl)
                                     : recvfrom(s, b, sizeof b, 0, (struct sockaddr *)&peer, &pl);
        int e = errno;
        if (mono_ms() - start < min_ms)
            _exit(201);
        _exit(r >= 0 ? 0 : e);
    }
    return c;
}

static void await_ready(int rfd)
{
    char b;
    CHECK(read(rfd, &b, 1) == 1);
    usleep(150 * 1000); /* and then some, to be inside the call */
}

static const char *status_of(int code)
{
    static char s[32];
    if (code == 0)
        return "ok";
    if (code > 128 && code < 200) {
        snprintf(s, sizeof s, "killed by %d", code - 128);
        return s;
    }
    if (code >= 200) {
        snprintf(s, sizeof s, "failed (%d)", code);
        return s;
    }
    return errname(code);
}

static void killed_while_waiting(const char *label, int type)
{
    int p[2];
    CHECK(pipe(p) == 0);
    int s = bound_socket(type, label);
    CHECK(s >= 0);
    pid_t c = waiter(s, p[1], type, 0);
    close(s); /* the waiting child holds the only reference */
    await_ready(p[0]);
    kill(c, SIGKILL);
    printf("%s: waiter %s\n", label, status_of(wait_child(c)));
    /* its socket is gone with it: nothing else holds the name */
    s = bound_socket(type, label);
    printf("%s: the name bound again: %s\n", label, s >= 0 ? "ok" : errname(errno));
    close(s);
    close(p[0]);
    close(p[1]);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    snprintf(prefix, sizeof prefix, "occlum-wait-end-%d", (int)getpid());

    killed_while_waiting("accept", SOCK_STREAM);
    killed_while_waiting("recvfrom", SOCK_DGRAM);

    /* a signal the thread blocks stays pending and does not end the wait */
    int p[2];
    CHECK(pipe(p) == 0);
    int l = bound_socket(SOCK_STREAM, "blocked");
    CHECK(l >= 0);
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &old); /* the child inherits the mask */
    pid_t c = waiter(l, p[1], SOCK_STREAM, 0);
    sigprocmask(SIG_SETMASK, &old, NULL);
    await_ready(p[0]);
    kill(c, SIGUSR1);
    usleep(150 * 1000);
    struct sockaddr_un a;
    socklen_t al = abstract_of(&a, "blocked");
    int k = socket(AF_UNIX, SOCK_STREAM, 0);
    OK("connect while SIGUSR1 is blocked and pending", connect(k, (struct sockaddr *)&a, al));
    printf("accept with SIGUSR1 blocked: %s\n", status_of(wait_child(c)));
    close(k);
    close(l);

    /* two waits at once: a recvfrom with SO_RCVTIMEO times out while an accept waits on */
    l = bound_socket(SOCK_STREAM, "both-stream");
    int d = bound_socket(SOCK_DGRAM, "both-dgram");
    CHECK(l >= 0 && d >= 0);
    struct timeval tv = {0, 300 * 1000};
    CHECK(setsockopt(d, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    pid_t acc = waiter(l, p[1], SOCK_STREAM, 0);
    await_ready(p[0]);
    pid_t rcv = waiter(d, p[1], SOCK_DGRAM, 250);
    await_ready(p[0]);
    printf("recvfrom with SO_RCVTIMEO beside a waiting accept: %s\n",
           status_of(wait_child(rcv)));
    al = abstract_of(&a, "both-stream");
    k = socket(AF_UNIX, SOCK_STREAM, 0);
    OK("connect to the waiting accept", connect(k, (struct sockaddr *)&a, al));
    printf("the accept: %s\n", status_of(wait_child(acc)));
    close(k);
    close(l);
    close(d);
    close(p[0]);
    close(p[1]);
    return t_finish();
}
