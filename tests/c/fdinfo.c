/* /proc/self/fdinfo/N: the position and flags of a file, and the state of special files as
 * the kernel shows it (an eventfd's counter, a signalfd's mask, a timerfd's clock, an epoll
 * set's entries). */
#include "common.h"
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

/* The value after "key:" in fd's fdinfo, as text; "(absent)" if there is no such line. */
static const char *field(int fd, const char *key)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    const char *s = read_file(path);
    if (!s)
        return errname(errno);
    static char out[128];
    size_t k = strlen(key);
    for (const char *line = s; *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : line + strlen(line)) {
        if (strncmp(line, key, k) == 0 && line[k] == ':') {
            const char *v = line + k + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t n = strcspn(v, "\n");
            snprintf(out, sizeof out, "%.*s", (int)(n < sizeof out ? n : sizeof out - 1), v);
            return out;
        }
    }
    return "(absent)";
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(write_file("f", "0123456789") == 0);
    int fd = open("f", O_RDWR | O_APPEND | O_CLOEXEC);
    lseek(fd, 4, SEEK_SET);
    printf("file pos: %s\n", field(fd, "pos"));
    unsigned long fl = strtoul(field(fd, "flags"), NULL, 8);
    printf("file flags: accmode %lo append %d cloexec %d\n", fl & O_ACCMODE, (fl & O_APPEND) != 0,
           (fl & O_CLOEXEC) != 0);
    close(fd);
    fd = open("f", O_RDONLY);
    fl = strtoul(field(fd, "flags"), NULL, 8);
    printf("read-only flags: accmode %lo append %d cloexec %d\n", fl & O_ACCMODE, (fl & O_APPEND) != 0,
           (fl & O_CLOEXEC) != 0);
    close(fd);

    int efd = eventfd(5, EFD_SEMAPHORE);
    printf("eventfd-count: %s\n", field(efd, "eventfd-count"));
    printf("eventfd-semaphore: %s\n", field(efd, "eventfd-semaphore"));

    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGUSR2);
    sigprocmask(SIG_BLOCK, &m, NULL);
    int sfd = signalfd(-1, &m, 0);
    printf("signalfd sigmask: %s\n", field(sfd, "sigmask"));

    int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    printf("timerfd clockid: %s\n", field(tfd, "clockid"));
    printf("timerfd ticks: %s\n", field(tfd, "ticks"));

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1234};
    epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
    const char *tfd_line = field(ep, "tfd");
    int target = atoi(tfd_line);
    const char *ev_at = strstr(tfd_line, "events:");
    const char *data_at = strstr(tfd_line, "data:");
    printf("epoll entry: fd matches %d, events %s, data %s\n", target == efd,
           ev_at ? (strtoul(ev_at + 7, NULL, 16) & EPOLLIN ? "with EPOLLIN" : "other") : "(absent)",
           data_at ? (strtoull(data_at + 5, NULL, 16) == 0x1234 ? "0x1234" : "other") : "(absent)");

    int p[2];
    CHECK(pipe(p) == 0);
    printf("pipe pos: %s\n", field(p[0], "pos"));
    ERR("fdinfo of a closed fd", open("/proc/self/fdinfo/99", O_RDONLY), ENOENT);
    return t_finish();
}
