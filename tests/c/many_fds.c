/* Twenty thousand descriptors open at once: every one keeps answering as the file it names.
 *
 * A program may hold many more descriptors than the LibOS's object table holds entries at
 * first; none of them may be forgotten, neither the ones held by the program nor one in
 * flight in an SCM_RIGHTS message (held by a socket, by no process). fstat of each one must
 * show the file it was opened at, getdents64 must list a directory, fchmod must change it.
 */
#include "common.h"
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#define WANT 20000
#define FILES 64

enum kind { DIR_HANDLE, FILE_HANDLE, PATH_HANDLE };

static int fds[WANT];
static enum kind kinds[WANT];

static enum kind kind_of(int i)
{
    if (i % 10 == 9)
        return FILE_HANDLE;
    if (i % 10 == 8)
        return PATH_HANDLE;
    return DIR_HANDLE;
}

static void name_of(int i, char *buf, size_t size)
{
    if (kind_of(i) == DIR_HANDLE)
        snprintf(buf, size, "d");
    else
        snprintf(buf, size, "d/f%d", i % FILES);
}

static int open_one(int i)
{
    char name[64];
    name_of(i, name, sizeof name);
    switch (kind_of(i)) {
    case DIR_HANDLE:
        return open(name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    case FILE_HANDLE:
        return open(name, O_RDWR | O_CLOEXEC);
    default:
        return open(name, O_PATH | O_CLOEXEC);
    }
}

/* fstat of fds[i] shows the file at its name. */
static int agrees(int fd, const char *name)
{
    struct stat a, b;
    if (fstat(fd, &a) != 0 || stat(name, &b) != 0)
        return 0;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_mode == b.st_mode &&
           a.st_nlink == b.st_nlink;
}

static int lists(int fd)
{
    char buf[8192];
    long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
    lseek(fd, 0, SEEK_SET);
    return n > 0;
}

static void send_fd(int sock, int fd)
{
    char byte = 'x';
    struct iovec iov = {&byte, 1};
    char ctl[CMSG_SPACE(sizeof(int))] = {0};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                         .msg_controllen = sizeof ctl};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    CHECK(sendmsg(sock, &msg, 0) == 1);
}

static int recv_fd(int sock)
{
    char byte;
    struct iovec iov = {&byte, 1};
    char ctl[CMSG_SPACE(sizeof(int))] = {0};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                         .msg_controllen = sizeof ctl};
    if (recvmsg(sock, &msg, 0) != 1)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = rl.rlim_max;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    long room = (long)rl.rlim_cur - 32;
    int n = room < WANT ? (int)room : WANT;
    /* what this test is about needs well over twice the table's first 8192 entries */
    printf("room for more than 16384: %s\n", n > 16500 ? "yes" : "no");

    OK("mkdir d", mkdir("d", 0755));
    for (int i = 0; i < FILES; i++) {
        char name[64];
        snprintf(name, sizeof name, "d/f%d", i);
        CHECK(write_file(name, "data\n") == 0);
    }
    int sv[2];
    OK("socketpair", socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));

    int opened = 0, failed_at = -1, failed_errno = 0;
    for (int i = 0; i < n; i++) {
        if (i == 100) {
            /* one directory descriptor travels in a message while the table grows */
            int fd = open("d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            CHECK(fd >= 0);
            send_fd(sv[0], fd);
            close(fd);
        }
        fds[i] = open_one(i);
        kinds[i] = kind_of(i);
        if (fds[i] < 0) {
            failed_at = i;
            failed_errno = errno;
            break;
        }
        opened++;
    }
    printf("opened all: %s\n", opened == n ? "yes" : "no");
    CHECK(opened == n);
    if (failed_at >= 0)
        printf("open %d failed: %s\n", failed_at, errname(failed_errno));

    int bad_stat = 0, bad_list = 0, first_bad = -1;
    for (int i = 0; i < opened; i++) {
        char name[64];
        name_of(i, name, sizeof name);
        int ok = agrees(fds[i], name);
        if (ok && kinds[i] == DIR_HANDLE && !lists(fds[i])) {
            bad_list++;
            ok = 0;
        } else if (!ok) {
            bad_stat++;
        }
        if (!ok && first_bad < 0)
            first_bad = i;
    }
    printf("fstat agrees with stat on every descriptor: %s\n", bad_stat ? "no" : "yes");
    printf("getdents64 lists every directory descriptor: %s\n", bad_list ? "no" : "yes");
    CHECK(bad_stat == 0 && bad_list == 0);
    if (first_bad >= 0)
        printf("first bad descriptor: #%d of %d (%d bad stat, %d bad list)\n", first_bad,
               opened, bad_stat, bad_list);

    /* fchmod through the first and the last descriptors of each kind */
    int bad_chmod = 0;
    for (int i = 0; i < opened; i++) {
        if (i >= 200 && i < opened - 200)
            continue;
        if (kinds[i] == PATH_HANDLE) {
            if (fchmod(fds[i], 0600) == 0 || errno != EBADF)
                bad_chmod++;
            continue;
        }
        mode_t want = kinds[i] == DIR_HANDLE ? 0750 : 0640;
        struct stat st;
        if (fchmod(fds[i], want) != 0 || fstat(fds[i], &st) != 0 || (st.st_mode & 07777) != want)
            bad_chmod++;
    }
    printf("fchmod through the first and last descriptors: %s\n", bad_chmod ? "no" : "yes");
    CHECK(bad_chmod == 0);

    int got = recv_fd(sv[1]);
    CHECK(got >= 0);
    int flew = got >= 0 && agrees(got, "d") && lists(got);
    printf("descriptor that was in flight: %s\n", flew ? "ok" : "bad");
    CHECK(flew);

    for (int i = 0; i < opened; i++)
        close(fds[i]);
    close(got);
    close(sv[0]);
    close(sv[1]);
    return t_finish();
}
