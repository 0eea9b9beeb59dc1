/* epoll_ctl on an O_PATH descriptor is EBADF (Linux finds no file behind it), on a pollless
 * open file EPERM. */
#include "common.h"
#include <sys/epoll.h>
int main(int argc, char **argv) {
    scratch_enter(argc, argv);
    write_file("f", "x");
    mkdir("d", 0755);
    int ep = epoll_create1(0);
    CHECK(ep >= 0);
    struct epoll_event ev = {.events = EPOLLIN};
    int pf = open("f", O_PATH);
    int pd = open("d", O_PATH);
    int pdd = open("d", O_PATH | O_DIRECTORY);
    int pr = open("/", O_PATH);
    symlink("f", "l");
    int pl = open("l", O_PATH | O_NOFOLLOW);
    CHECK(pf >= 0 && pd >= 0 && pdd >= 0 && pr >= 0 && pl >= 0);
    ERR("O_PATH file", epoll_ctl(ep, EPOLL_CTL_ADD, pf, &ev), EBADF);
    ERR("O_PATH dir", epoll_ctl(ep, EPOLL_CTL_ADD, pd, &ev), EBADF);
    ERR("O_PATH|O_DIRECTORY", epoll_ctl(ep, EPOLL_CTL_ADD, pdd, &ev), EBADF);
    ERR("O_PATH root", epoll_ctl(ep, EPOLL_CTL_ADD, pr, &ev), EBADF);
    ERR("O_PATH symlink", epoll_ctl(ep, EPOLL_CTL_ADD, pl, &ev), EBADF);
    ERR("O_PATH as epoll fd", epoll_ctl(pf, EPOLL_CTL_ADD, ep, &ev), EBADF);
    ERR("O_PATH del", epoll_ctl(ep, EPOLL_CTL_DEL, pf, NULL), EBADF);
    int rf = open("f", O_RDONLY);
    ERR("regular file", epoll_ctl(ep, EPOLL_CTL_ADD, rf, &ev), EPERM);
    int rd = open("d", O_RDONLY | O_DIRECTORY);
    ERR("directory", epoll_ctl(ep, EPOLL_CTL_ADD, rd, &ev), EPERM);
    return t_finish();
}
