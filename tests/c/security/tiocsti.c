/* Typing into a terminal: TIOCSTI puts bytes into a terminal's input as if they were typed, so
 * a program run from a shell could leave commands for that shell to run once it has exited;
 * TIOCLINUX's selection paste does the same on a virtual console. Each probe types into a
 * pseudo-terminal of its own that it made its controlling terminal, never into the terminal it
 * was started from: natively the bytes really arrive, but only there. */
#include "sec.h"
#include <poll.h>
#include <pty.h>
#include <sys/ioctl.h>

#ifndef TIOCL_PASTESEL
#define TIOCL_PASTESEL 3
#endif

static int master = -1, slave = -1;

/* A new session whose controlling terminal is a fresh pseudo-terminal (we run in PROBE's
 * child); -1 with errno if that cannot be made. */
static int own_terminal(void)
{
    if (setsid() < 0 || openpty(&master, &slave, NULL, NULL, NULL) < 0)
        return -1;
    return ioctl(slave, TIOCSCTTY, 0);
}

/* What typed bytes reached the slave's input: 1 if `want` arrived. */
static int arrived(const char *want)
{
    char buf[64] = {0};
    struct pollfd p = {slave, POLLIN, 0};
    if (poll(&p, 1, 1000) != 1)
        return 0;
    ssize_t n = read(slave, buf, sizeof buf - 1);
    return n > 0 && strstr(buf, want) != NULL;
}

static long typed(unsigned long request)
{
    if (own_terminal() < 0)
        _exit(3);
    const char *text = "id\n";
    for (const char *c = text; *c; c++)
        if (ioctl(slave, request, c) < 0)
            return -1;
    if (!arrived("id"))
        _exit(4);
    return 0;
}

static long sti(void) { return typed(TIOCSTI); }
/* the kernel reads the request as an unsigned int: high bits must not hide it */
static long sti_high_bits(void) { return typed(0xdead00000000UL | TIOCSTI); }

static long paste(void)
{
    if (own_terminal() < 0)
        _exit(3);
    char sub = TIOCL_PASTESEL;
    return ioctl(slave, TIOCLINUX, &sub);
}

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    PROBE("TIOCSTI into its controlling terminal", sti);
    PROBE("TIOCSTI with high bits in the request", sti_high_bits);
    PROBE("TIOCLINUX paste", paste);
    return sec_finish();
}
