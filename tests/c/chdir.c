/* chdir, fchdir, getcwd: relative resolution and the names getcwd reports. */
#include "common.h"

static char base[PATH_MAX];

static void pwd(const char *label)
{
    char buf[PATH_MAX];
    if (!getcwd(buf, sizeof buf)) {
        printf("%s: getcwd %s\n", label, errname(errno));
        t_failures++;
        return;
    }
    size_t n = strlen(base);
    if (strncmp(buf, base, n) == 0)
        printf("%s: <scratch>%s\n", label, buf + n);
    else
        printf("%s: %s\n", label, buf);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(getcwd(base, sizeof base) != NULL);
    CHECK(base[0] == '/');
    pwd("start");
    CHECK(mkdir("a", 0755) == 0 && mkdir("a/b", 0755) == 0);
    CHECK(write_file("a/b/f", "found") == 0);
    OK("chdir a/b", chdir("a/b"));
    pwd("in a/b");
    printf("relative open: %s\n", read_file("f"));
    OK("chdir ..", chdir(".."));
    pwd("after ..");
    ERR("chdir file", chdir("b/f"), ENOTDIR);
    ERR("chdir missing", chdir("zzz"), ENOENT);
    int fd = open("b", O_RDONLY | O_DIRECTORY);
    OK("chdir /", chdir("/"));
    pwd("root");
    OK("fchdir", fchdir(fd));
    pwd("after fchdir");
    close(fd);
    fd = open("f", O_RDONLY);
    ERR("fchdir on file", fchdir(fd), ENOTDIR);
    close(fd);
    ERR("fchdir bad fd", fchdir(12345), EBADF);

    CHECK(chdir(base) == 0);
    CHECK(symlink("a/b", "lnk") == 0);
    OK("chdir through symlink", chdir("lnk"));
    pwd("via symlink (physical)");
    CHECK(chdir(base) == 0);
    char small[2];
    ERR("getcwd small buffer", (long)(getcwd(small, sizeof small) ? 0 : -1), ERANGE);
    CHECK(chdir("/.././..") == 0);
    pwd("root dotdot");
    return t_finish();
}
