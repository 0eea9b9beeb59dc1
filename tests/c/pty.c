/* Pseudo-terminals: /dev/ptmx and /dev/pts, openpty, ptsname, termios in canonical and raw
 * mode, TIOCGPTPEER, locked slaves, a child taking the slave as its controlling terminal. */
#include "common.h"
#include <poll.h>
#include <pty.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <termios.h>

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

/* Everything readable on fd within a short wait, as one string. */
static const char *drain(int fd)
{
    static char buf[512];
    size_t len = 0;
    struct pollfd p = {fd, POLLIN, 0};
    while (len < sizeof buf - 1 && poll(&p, 1, len ? 100 : 2000) == 1 && (p.revents & POLLIN)) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = 0;
    return buf;
}

static void show(const char *label, const char *s)
{
    printf("%s: \"", label);
    for (; *s; s++) {
        if (*s == '\n')
            printf("\\n");
        else if (*s == '\r')
            printf("\\r");
        else if ((unsigned char)*s < 32 || *s == 0x7f)
            printf("\\x%02x", (unsigned char)*s);
        else
            putchar(*s);
    }
    printf("\"\n");
}

static int in_dev_pts(const char *name)
{
    DIR *d = opendir("/dev/pts");
    struct dirent *de;
    int found = 0;
    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL)
        found |= strcmp(de->d_name, name) == 0;
    closedir(d);
    return found;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct stat st, st2;

    CHECK(stat("/dev/ptmx", &st) == 0);
    printf("/dev/ptmx: %s %u,%u\n", ftype(st.st_mode), major(st.st_rdev), minor(st.st_rdev));
    CHECK(stat("/dev/pts", &st) == 0);
    printf("/dev/pts: %s\n", ftype(st.st_mode));

    /* the POSIX way: posix_openpt, grantpt, unlockpt, ptsname */
    int m = OK("posix_openpt", posix_openpt(O_RDWR | O_NOCTTY));
    OK("grantpt", grantpt(m));
    unsigned int n = 0;
    OK("TIOCGPTN", ioctl(m, TIOCGPTN, &n));
    char *name = ptsname(m);
    CHECK(name != NULL);
    char want[64];
    snprintf(want, sizeof want, "/dev/pts/%u", n);
    printf("ptsname is /dev/pts/<TIOCGPTN>: %d\n", name && strcmp(name, want) == 0);
    char num[16];
    snprintf(num, sizeof num, "%u", n);
    printf("listed in /dev/pts: %d, ptmx listed: %d\n", in_dev_pts(num), in_dev_pts("ptmx"));
    ERR("open locked slave", open(want, O_RDWR | O_NOCTTY), EIO);
    OK("unlockpt", unlockpt(m));
    int s = OK("open slave", open(want, O_RDWR | O_NOCTTY));

    CHECK(fstat(m, &st) == 0);
    printf("master: %s %u,%u\n", ftype(st.st_mode), major(st.st_rdev), minor(st.st_rdev));
    CHECK(fstat(s, &st) == 0 && stat(want, &st2) == 0);
    printf("slave: %s major %u minor is N: %d\n", ftype(st.st_mode), major(st.st_rdev),
           minor(st.st_rdev) == n);
    printf("fstat and stat agree: %d\n", st.st_dev == st2.st_dev && st.st_ino == st2.st_ino &&
                                             st.st_rdev == st2.st_rdev);
    printf("isatty master %d slave %d\n", isatty(m), isatty(s));
    OK("fchmod slave", fchmod(s, 0600));
    CHECK(stat(want, &st2) == 0);
    printf("mode after fchmod: %o\n", (unsigned)(st2.st_mode & 07777));
    OK("chmod slave", chmod(want, 0620));
    CHECK(fstat(s, &st2) == 0);
    printf("mode after chmod: %o\n", (unsigned)(st2.st_mode & 07777));
    char *tn = ttyname(s);
    printf("ttyname of slave is ptsname: %d\n", tn && strcmp(tn, want) == 0);

    /* canonical mode: the line arrives whole, echoed back to the master */
    struct termios t;
    OK("tcgetattr", tcgetattr(s, &t));
    printf("canonical %d echo %d\n", !!(t.c_lflag & ICANON), !!(t.c_lflag & ECHO));
    CHECK(write(m, "hello\n", 6) == 6);
    show("slave read", drain(s));
    show("echo on master", drain(m));
    CHECK(write(s, "out\n", 4) == 4);
    show("master read (onlcr)", drain(m));

    /* raw mode: bytes pass as they are, no echo, no line editing */
    struct termios raw = t;
    cfmakeraw(&raw);
    OK("tcsetattr raw", tcsetattr(s, TCSANOW, &raw));
    OK("tcgetattr", tcgetattr(s, &t));
    printf("canonical %d echo %d opost %d\n", !!(t.c_lflag & ICANON), !!(t.c_lflag & ECHO),
           !!(t.c_oflag & OPOST));
    CHECK(write(m, "ab\x7f" "c", 4) == 4);
    show("raw slave read", drain(s));
    CHECK(write(s, "x\n", 2) == 2);
    show("raw master read", drain(m));

    struct winsize ws = {.ws_row = 33, .ws_col = 101};
    OK("TIOCSWINSZ", ioctl(m, TIOCSWINSZ, &ws));
    memset(&ws, 0, sizeof ws);
    OK("TIOCGWINSZ", ioctl(s, TIOCGWINSZ, &ws));
    printf("window %ux%u\n", ws.ws_col, ws.ws_row);

    /* TIOCGPTPEER opens the same slave without its name */
    int peer = OK("TIOCGPTPEER", ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY));
    CHECK(fstat(peer, &st2) == 0);
    printf("peer is the slave: %d\n", st2.st_rdev == st.st_rdev && st2.st_ino == st.st_ino);
    tn = ttyname(peer);
    printf("ttyname of peer: %d\n", tn && strcmp(tn, want) == 0);
    char link[64], fdpath[64];
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", m);
    ssize_t len;
    len = readlink(fdpath, link, sizeof link - 1);
    link[len > 0 ? len : 0] = 0;
    show("/proc/self/fd of the master", link);
    close(peer);

    /* openpty: a second pair, another number */
    int m2, s2;
    char name2[64];
    OK("openpty", openpty(&m2, &s2, name2, NULL, NULL));
    printf("openpty name differs: %d, is ptsname: %d\n", strcmp(name2, want) != 0,
           strcmp(name2, ptsname(m2)) == 0);
    /* glibc's openpty opens the slave with TIOCGPTPEER, by no name */
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", s2);
    len = readlink(fdpath, link, sizeof link - 1);
    link[len > 0 ? len : 0] = 0;
    printf("/proc/self/fd names the slave: %d\n", strcmp(link, name2) == 0);
    tn = ttyname(s2);
    printf("ttyname of the slave: %d\n", tn && strcmp(tn, name2) == 0);
    close(m2);
    close(s2);

    /* a child in a session of its own takes the slave as its controlling terminal */
    tcsetattr(s, TCSANOW, &t);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        int ok = setsid() == getpid();
        int tty = open("/dev/tty", O_RDWR);
        dprintf(s, "/dev/tty before: %s\n", tty < 0 ? errname(errno) : "opened");
        ok &= ioctl(s, TIOCSCTTY, 0) == 0;
        ok &= tcgetpgrp(s) == getpid();
        ok &= tcgetsid(s) == getpid();
        tty = open("/dev/tty", O_RDWR);
        ok &= tty >= 0 && isatty(tty);
        dprintf(tty, "via /dev/tty\n");
        dprintf(s, "child ok %d\n", ok);
        _exit(ok ? 0 : 1);
    }
    printf("child exit %d\n", wait_child(c));
    show("from the child", drain(m));
    ERR("TIOCSCTTY of a taken terminal", ioctl(s, TIOCSCTTY, 0), EPERM);

    /* the master sees EIO once no slave is open */
    close(s);
    char b;
    ERR("read master without slave", read(m, &b, 1), EIO);
    close(m);
    printf("gone from /dev/pts: %d\n", in_dev_pts(num) == 0);
    return t_finish();
}
