/* Thirty thousand files in one directory of /tmp, created one by one, written, closed; a sample
 * reopened and read back; the directory listed; all deleted. Then 25 000 in a tmpfs mounted
 * at run time, whose statfs counts their pages.
 *
 * The program holds a handful of descriptors at most. The LibOS once kept a host descriptor
 * (a memfd, or a file of the tmpfs mount's host instance) for every file for the file's whole
 * life, so creation stopped near the descriptor limit (about 20 000 files) with EMFILE; now a
 * file nobody holds lets it go. Also: a held file (open, and mapped; open in another process)
 * keeps its contents and is seen by later opens while thousands of others come and go; a
 * sparse file keeps its holes.
 *
 * Natively the tmpfs is mounted in a private mount namespace of the test's own; inside the
 * LibOS unshare is refused and the mount is the LibOS's own (as in mount_tmpfs.c).
 */
#include "common.h"
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/statfs.h>

#define FILES 30000
#define TMPFS_FILES 25000

static const char *where = "."; /* the directory the files are made in */

static void name_of(char *buf, size_t n, long i)
{
    snprintf(buf, n, "%s/f%05ld", where, i);
}

static int contents_ok(long i)
{
    char name[64], want[64];
    name_of(name, sizeof name, i);
    snprintf(want, sizeof want, "file %ld of many\n", i);
    const char *got = read_file(name);
    return got != NULL && strcmp(got, want) == 0;
}

/* n files made one by one, each written and closed; how many were made */
static long make_files(long n)
{
    long made = 0;
    int first_error = 0;
    for (long i = 0; i < n; i++) {
        char name[64], text[64];
        name_of(name, sizeof name, i);
        int fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) {
            first_error = errno;
            break;
        }
        int len = snprintf(text, sizeof text, "file %ld of many\n", i);
        if (write(fd, text, len) != len) {
            first_error = errno;
            close(fd);
            break;
        }
        close(fd);
        made++;
    }
    printf("created: %ld, stopped by: %s\n", made, errname(first_error));
    return made;
}

/* a sample of the files read back; how many were wrong */
static long read_back(long made)
{
    long bad = 0, checked = 0;
    for (long i = 0; i < made; i += 997, checked++)
        bad += !contents_ok(i);
    if (made) {
        bad += !contents_ok(made - 1);
        checked++;
    }
    printf("sample read back: %ld checked, %ld wrong\n", checked, bad);
    return bad;
}

/* the entries of the directory that start with 'f', or all but . and .. */
static long count_entries(int only_f)
{
    long n = 0;
    DIR *d = opendir(where);
    CHECK(d != NULL);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        if (only_f ? de->d_name[0] == 'f'
                   : strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    if (d)
        closedir(d);
    return n;
}

static long delete_files(long made)
{
    long unlinked = 0;
    for (long i = 0; i < made; i++) {
        char name[64];
        name_of(name, sizeof name, i);
        unlinked += unlink(name) == 0;
    }
    printf("deleted: %ld\n", unlinked);
    return unlinked;
}

/* the same in a tmpfs mounted at run time: its statfs counts each file's page */
static void in_tmpfs(void)
{
    if (unshare(CLONE_NEWNS) == 0)
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    OK("mkdir mnt", mkdir("mnt", 0755));
    OK("mount tmpfs", mount("tmpfs", "mnt", "tmpfs", 0, "size=256m"));
    where = "mnt";
    struct statfs before, full, after;
    OK("statfs before", statfs("mnt", &before));
    long made = make_files(TMPFS_FILES);
    OK("statfs full", statfs("mnt", &full));
    printf("pages the files take: %ld\n", (long)(before.f_bfree - full.f_bfree));
    long bad = read_back(made);
    long listed = count_entries(1);
    printf("listed: %ld\n", listed);
    long unlinked = delete_files(made);
    OK("statfs after", statfs("mnt", &after));
    printf("pages back: %d\n", after.f_bfree == before.f_bfree);
    OK("umount", umount("mnt"));
    CHECK(made == TMPFS_FILES && bad == 0 && listed == made && unlinked == made);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);

    /* held across the whole run: a descriptor and a shared mapping */
    int held = OK("open held", open("held", O_RDWR | O_CREAT | O_EXCL, 0644));
    OK("size held", ftruncate(held, 4096));
    char *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, held, 0);
    CHECK(map != MAP_FAILED);
    memcpy(map, "mapped before", 13);

    /* a sparse file: data, a hole, data */
    int sp = OK("open sparse", open("sparse", O_RDWR | O_CREAT | O_EXCL, 0644));
    CHECK(pwrite(sp, "head", 4, 0) == 4);
    CHECK(pwrite(sp, "tail", 4, 1 << 20) == 4);
    close(sp);

    /* a file another process holds open while the files come and go */
    int go[2], back[2];
    OK("pipe", pipe(go));
    OK("pipe", pipe(back));
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        int fd = open("shared", O_RDWR | O_CREAT | O_EXCL, 0644);
        char c = 'x', buf[16] = "";
        if (fd < 0 || write(fd, "from child", 10) != 10)
            _exit(3);
        if (write(back[1], &c, 1) != 1 || read(go[0], &c, 1) != 1) /* the parent's turn */
            _exit(4);
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        printf("child sees: %.*s\n", (int)(n > 0 ? n : 0), buf);
        fflush(stdout);
        _exit(0);
    }
    char c;
    CHECK(read(back[0], &c, 1) == 1);

    long made = make_files(FILES);
    long bad = read_back(made);

    const char *sh = read_file("shared");
    printf("parent sees: %s\n", sh ? sh : errname(errno));
    int so = OK("open shared", open("shared", O_WRONLY));
    CHECK(pwrite(so, "from parent", 11, 0) == 11);
    close(so);
    fflush(stdout); /* the child's line comes after these */
    CHECK(write(go[1], "g", 1) == 1);
    printf("child: %d\n", wait_child(child));
    OK("unlink shared", unlink("shared"));

    struct stat st;
    if (made > 12345) {
        char name[64];
        name_of(name, sizeof name, 12345);
        OK("stat sample", stat(name, &st));
        printf("sample size %lld, nlink %ld\n", (long long)st.st_size, (long)st.st_nlink);
    }

    /* the held file: its mapping and every new open see the same pages */
    const char *h = read_file("held");
    printf("held reads: %.13s\n", h ? h : errname(errno));
    int w = OK("reopen held", open("held", O_WRONLY));
    CHECK(pwrite(w, "written after", 13, 0) == 13);
    close(w);
    printf("mapping sees: %.13s\n", map);
    munmap(map, 4096);
    close(held);

    /* the sparse file kept its hole */
    sp = OK("reopen sparse", open("sparse", O_RDONLY));
    OK("fstat sparse", fstat(sp, &st));
    off_t data = lseek(sp, 0, SEEK_DATA), hole = lseek(sp, 0, SEEK_HOLE);
    off_t data2 = lseek(sp, hole, SEEK_DATA);
    printf("sparse: size %lld, data at 0: %d, hole before 1 MiB: %d, data again at 1 MiB: %d\n",
           (long long)st.st_size, data == 0, hole > 0 && hole < (1 << 20),
           data2 == (1 << 20));
    char buf[4];
    CHECK(pread(sp, buf, 4, 1 << 20) == 4 && memcmp(buf, "tail", 4) == 0);
    close(sp);

    long listed = count_entries(1);
    printf("listed: %ld\n", listed);

    long unlinked = delete_files(made);
    OK("unlink held", unlink("held"));
    OK("unlink sparse", unlink("sparse"));
    long left = count_entries(0);
    printf("left: %ld\n", left);

    CHECK(made == FILES && bad == 0 && listed == made && unlinked == made && left == 0);

    in_tmpfs();
    return t_finish();
}
