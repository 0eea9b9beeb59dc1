/* Thirty thousand files in one directory of /tmp, created one by one, written, closed; a sample
 * reopened and read back; the directory listed; all deleted.
 *
 * The program never holds more than two descriptors. The LibOS once kept a host descriptor
 * (a memfd) for every ramfs file for the file's whole life, so creation stopped near the
 * descriptor limit (about 20 000 files) with EMFILE; now a file nobody holds lets it go.
 * Also: a held file (open, and mapped) keeps its contents and is seen by later opens while
 * thousands of others come and go; a sparse file keeps its holes.
 */
#include "common.h"
#include <sys/mman.h>

#define FILES 30000

static void name_of(char *buf, size_t n, long i)
{
    snprintf(buf, n, "f%05ld", i);
}

static int contents_ok(long i)
{
    char name[32], want[64];
    name_of(name, sizeof name, i);
    snprintf(want, sizeof want, "file %ld of many\n", i);
    const char *got = read_file(name);
    return got != NULL && strcmp(got, want) == 0;
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

    long made = 0;
    int first_error = 0;
    for (long i = 0; i < FILES; i++) {
        char name[32], text[64];
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

    long bad = 0, checked = 0;
    for (long i = 0; i < made; i += 997, checked++)
        bad += !contents_ok(i);
    if (made) {
        bad += !contents_ok(made - 1);
        checked++;
    }
    printf("sample read back: %ld checked, %ld wrong\n", checked, bad);

    struct stat st;
    if (made > 12345) {
        char name[32];
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

    long listed = 0;
    DIR *d = opendir(".");
    CHECK(d != NULL);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        if (de->d_name[0] == 'f')
            listed++;
    if (d)
        closedir(d);
    printf("listed: %ld\n", listed);

    long unlinked = 0;
    for (long i = 0; i < made; i++) {
        char name[32];
        name_of(name, sizeof name, i);
        unlinked += unlink(name) == 0;
    }
    OK("unlink held", unlink("held"));
    OK("unlink sparse", unlink("sparse"));
    printf("deleted: %ld\n", unlinked);

    long left = 0;
    d = opendir(".");
    while (d && (de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            left++;
    if (d)
        closedir(d);
    printf("left: %ld\n", left);

    CHECK(made == FILES && bad == 0 && listed == made && unlinked == made && left == 0);
    return t_finish();
}
