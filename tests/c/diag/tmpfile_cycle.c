/* One short-lived program's worth of nameless files, for the descriptor count of a started
 * instance: O_TMPFILE files on the given directories (Python's tempfile.TemporaryFile makes
 * them), each written, opened a second time through /proc/self/fd (a second open file
 * description) and closed; in each directory one that stays nameless, one named with linkat
 * and removed again.  Exits 0 when every step worked.
 *
 *   tmpfile_cycle DIR...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what, const char *dir)
{
    fprintf(stderr, "tmpfile_cycle: %s in %s: %s\n", what, dir, strerror(errno));
    return 1;
}

/* A nameless file in dir, written, opened again through /proc/self/fd and read back there;
 * with name set, given that name with linkat and removed again.  Returns 0 on success. */
static int cycle(const char *dir, const char *name)
{
    int fd = open(dir, O_TMPFILE | O_RDWR, 0600);
    if (fd < 0)
        return fail("open O_TMPFILE", dir);
    if (write(fd, "nameless", 8) != 8)
        return fail("write", dir);
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    int again = open(self, O_RDONLY);
    if (again < 0)
        return fail("reopen", dir);
    close(fd);
    char buf[8];
    if (pread(again, buf, sizeof buf, 0) != 8 || memcmp(buf, "nameless", 8) != 0)
        return fail("read back", dir);
    if (name) {
        snprintf(self, sizeof self, "/proc/self/fd/%d", again);
        if (linkat(AT_FDCWD, self, AT_FDCWD, name, AT_SYMLINK_FOLLOW) != 0)
            return fail("linkat", dir);
        if (unlink(name) != 0)
            return fail("unlink", dir);
    }
    close(again);
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s/tmpfile_cycle.%d", argv[i], (int)getpid());
        if (cycle(argv[i], NULL) || cycle(argv[i], name))
            return 1;
    }
    return 0;
}
