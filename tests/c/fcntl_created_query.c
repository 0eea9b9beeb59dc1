#include "common.h"
#ifndef F_CREATED_QUERY
#define F_CREATED_QUERY 1028 /* F_LINUX_SPECIFIC_BASE + 4, Linux 6.12 */
#endif
/* fcntl(F_CREATED_QUERY) is 1 on a descriptor whose open created the file, 0 otherwise; a
 * kernel without the command (before 6.12), and the LibOS, which cannot tell, refuse it with
 * EINVAL. A wrong answer is the failure: every query either answers right or is refused. */
static int refused = -1;
static void query(const char *label, int fd, int want)
{
    errno = 0;
    int r = fcntl(fd, F_CREATED_QUERY);
    int no = r < 0 && errno == EINVAL;
    if (refused < 0)
        refused = no;
    if (no != refused)
        t_fail(__FILE__, __LINE__, "%s: refused only sometimes", label);
    else if (!no && r != want)
        t_fail(__FILE__, __LINE__, "%s: %d (%s), expected %d", label, r, errname(errno), want);
    else
        printf("%s: right or refused\n", label);
}

int main(int argc, char **argv) {
    scratch_enter(argc, argv);
    int fd = open("new", O_RDWR | O_CREAT, 0644);
    CHECK(fd >= 0);
    query("created", fd, 1);
    query("reopened with O_CREAT", open("new", O_RDWR | O_CREAT, 0644), 0);
    query("reopened", open("new", O_RDONLY), 0);
    query("dup of created", dup(fd), 1);
    query("O_EXCL", open("excl", O_RDWR | O_CREAT | O_EXCL, 0644), 1);
    query("directory", open(".", O_RDONLY | O_DIRECTORY), 0);
    query("creat", creat("c", 0644), 1);
    ERR("bad fd", fcntl(9999, F_GETFD), EBADF);
    /* the other commands are untouched */
    OK("F_GETFL", fcntl(fd, F_GETFL));
    return t_finish();
}
