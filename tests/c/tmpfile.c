/* O_TMPFILE: an unnamed regular file in a directory's file system (the root, /tmp, the
 * scratch directory), given a name later with linkat through /proc/self/fd/N
 * (AT_SYMLINK_FOLLOW) or through its descriptor (AT_EMPTY_PATH); O_EXCL keeps it nameless. */
#include "common.h"

static void show_fd(const char *label, int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        printf("%s: fstat %s\n", label, errname(errno));
        return;
    }
    printf("%s: mode %o, nlink %lu, size %ld\n", label, (unsigned)st.st_mode,
           (unsigned long)st.st_nlink, (long)st.st_size);
}

static int entries(void)
{
    DIR *d = opendir(".");
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    if (d)
        closedir(d);
    return n;
}

static int link_proc(int fd, const char *name)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, p, AT_FDCWD, name, AT_SYMLINK_FOLLOW);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    char buf[16] = {0};

    int fd = OK("tmpfile on /", open("/", O_TMPFILE | O_RDWR, 0600));
    OK("write", write(fd, "hello", 5));
    show_fd("root tmpfile", fd);
    close(fd);

    fd = OK("tmpfile on /tmp", open("/tmp", O_TMPFILE | O_RDWR, 0644));
    OK("write", write(fd, "hi", 2));
    show_fd("/tmp tmpfile", fd);
    close(fd);

    fd = OK("tmpfile here", open(".", O_TMPFILE | O_RDWR, 0666));
    OK("write", write(fd, "data", 4));
    show_fd("unnamed", fd);
    printf("entries while unnamed: %d\n", entries());
    OK("link via /proc/self/fd", link_proc(fd, "linked"));
    show_fd("linked", fd);
    printf("entries: %d\n", entries());
    const char *text = read_file("linked");
    printf("contents: %s\n", text ? text : "(none)");
    ERR("link over an existing name", link_proc(fd, "linked"), EEXIST);
    OK("second name", link_proc(fd, "linked2"));
    show_fd("two names", fd);
    OK("write through the descriptor", pwrite(fd, "DATA", 4, 0));
    text = read_file("linked2");
    printf("contents: %s\n", text ? text : "(none)");
    close(fd);

    fd = OK("tmpfile write-only", open(".", O_TMPFILE | O_WRONLY, 0600));
    OK("write", write(fd, "x", 1));
    OK("link via AT_EMPTY_PATH", linkat(fd, "", AT_FDCWD, "empty", AT_EMPTY_PATH));
    struct stat st;
    OK("stat", stat("empty", &st));
    printf("empty: size %ld, nlink %lu\n", (long)st.st_size, (unsigned long)st.st_nlink);
    close(fd);

    fd = OK("tmpfile O_EXCL", open(".", O_TMPFILE | O_RDWR | O_EXCL, 0600));
    ERR("link of an O_EXCL tmpfile", link_proc(fd, "excl"), ENOENT);
    ERR("AT_EMPTY_PATH link of it", linkat(fd, "", AT_FDCWD, "excl", AT_EMPTY_PATH), ENOENT);
    close(fd);

    fd = OK("tmpfile to name and unname", open(".", O_TMPFILE | O_RDWR, 0600));
    OK("link", link_proc(fd, "t4"));
    OK("unlink", unlink("t4"));
    ERR("link once unlinked", link_proc(fd, "t4"), ENOENT);
    OK("read back", pread(fd, buf, sizeof buf - 1, 0));
    close(fd);

    /* a second open file description keeps it when the first is closed (the LibOS frees a
     * nameless file at the close of its last one): calls made meanwhile let it see the
     * first close, then the second still names and holds it */
    fd = OK("tmpfile with two descriptions", open(".", O_TMPFILE | O_RDWR, 0600));
    OK("write", write(fd, "second", 6));
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    int again = OK("open again through /proc", open(self, O_RDONLY));
    close(fd);
    struct stat ignored;
    for (int i = 0; i < 40; i++)
        stat(".", &ignored);
    OK("link through the second", link_proc(again, "kept"));
    text = read_file("kept");
    printf("kept: %s\n", text ? text : "(none)");
    show_fd("kept", again);
    close(again);
    OK("unlink", unlink("kept"));

    ERR("read-only tmpfile", open(".", O_TMPFILE | O_RDONLY, 0600), EINVAL);
    ERR("tmpfile with O_CREAT", open(".", O_TMPFILE | O_CREAT | O_RDWR, 0600), EINVAL);
    ERR("tmpfile on a file", open("linked", O_TMPFILE | O_RDWR, 0600), ENOTDIR);
    ERR("tmpfile on a missing dir", open("nodir", O_TMPFILE | O_RDWR, 0600), ENOENT);
    printf("entries at the end: %d\n", entries());

    if (t_failures)
        return 1;
    printf("PASS\n");
    return 0;
}
