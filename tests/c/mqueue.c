/* POSIX message queues: open, send, receive in priority order, attributes, unlink; the names
 * live in the IPC namespace's own mqueue file system. */
#include "common.h"
#include <mqueue.h>

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    const char *name = "/occlum-test-mq";
    mq_unlink(name);
    struct mq_attr attr = {.mq_maxmsg = 4, .mq_msgsize = 32};
    mqd_t q = OK("mq_open O_CREAT", mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, &attr));
    ERR("mq_open O_EXCL again", mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, &attr), EEXIST);
    OK("mq_send low", mq_send(q, "low", 3, 1));
    OK("mq_send high", mq_send(q, "high", 4, 9));
    struct mq_attr got;
    OK("mq_getattr", mq_getattr(q, &got));
    printf("maxmsg %ld msgsize %ld curmsgs %ld\n", got.mq_maxmsg, got.mq_msgsize, got.mq_curmsgs);
    char buf[32];
    unsigned prio = 0;
    ssize_t n = mq_receive(q, buf, sizeof buf, &prio);
    printf("first: %.*s prio %u\n", (int)n, buf, prio);
    n = mq_receive(q, buf, sizeof buf, &prio);
    printf("second: %.*s prio %u\n", (int)n, buf, prio);
    mqd_t again = OK("mq_open existing", mq_open(name, O_RDONLY));
    mq_close(again);
    mq_close(q);
    OK("mq_unlink", mq_unlink(name));
    ERR("mq_unlink again", mq_unlink(name), ENOENT);
    ERR("mq_open missing", mq_open(name, O_RDONLY), ENOENT);
    ERR("mq_open name with a slash inside", mq_open("/a/b", O_CREAT | O_RDWR, 0600, NULL), EACCES);
    return t_finish();
}
