/* mkdir/mkdirat: modes (set-id bits, set-group-id parents), errors, nlink of directories. */
#include "common.h"

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct stat st;
    OK("mkdir", mkdir("a", 0755));
    CHECK(stat("a", &st) == 0);
    printf("a: %s %o\n", ftype(st.st_mode), st.st_mode & 07777);
    ERR("mkdir existing", mkdir("a", 0755), EEXIST);
    ERR("mkdir missing parent", mkdir("x/y", 0755), ENOENT);
    CHECK(write_file("f", "") == 0);
    ERR("mkdir under file", mkdir("f/y", 0755), ENOTDIR);
    ERR("mkdir over file", mkdir("f", 0755), EEXIST);
    OK("mkdir trailing slash", mkdir("b/", 0700));
    CHECK(stat("b", &st) == 0);
    printf("b: %o\n", st.st_mode & 07777);
    umask(077);
    OK("mkdir with umask 077", mkdir("c", 0777));
    CHECK(stat("c", &st) == 0);
    printf("c: %o\n", st.st_mode & 07777);
    umask(022);
    OK("mkdir sticky", mkdir("s", 01777));
    CHECK(stat("s", &st) == 0);
    printf("s: %o\n", st.st_mode & 07777);
    int dfd = open("a", O_RDONLY | O_DIRECTORY);
    OK("mkdirat", mkdirat(dfd, "inner", 0755));
    OK("mkdirat nested", mkdirat(dfd, "inner/deeper", 0755));
    close(dfd);
    CHECK(stat("a/inner/deeper", &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(stat("a", &st) == 0);
    ERR("mkdir dot", mkdir(".", 0755), EEXIST);
    ERR("mkdir empty", mkdir("", 0755), ENOENT);
    CHECK(symlink("a", "la") == 0);
    ERR("mkdir over symlink", mkdir("la", 0755), EEXIST);
    OK("mkdir through symlink dir", mkdir("la/viaLink", 0755));
    CHECK(access("a/viaLink", F_OK) == 0);
    char longname[300];
    memset(longname, 'n', 299);
    longname[299] = 0;
    ERR("name too long", mkdir(longname, 0755), ENAMETOOLONG);

    /* mkdir takes no set-id bit from its mode; a set-group-id parent passes on its group
     * and its S_ISGID */
    OK("mkdir 06755", mkdir("setid", 06755));
    CHECK(stat("setid", &st) == 0);
    printf("setid: %o\n", st.st_mode & 07777);
    OK("chmod g+s", chmod("setid", 02755));
    OK("chown group", chown("setid", -1, 4321));
    OK("mkdir in set-gid dir", mkdir("setid/sub", 0700));
    CHECK(stat("setid/sub", &st) == 0);
    printf("setid/sub: %o group %u\n", st.st_mode & 07777, (unsigned)st.st_gid);
    CHECK(write_file("setid/file", "") == 0);
    CHECK(stat("setid/file", &st) == 0);
    printf("setid/file: %o group %u\n", st.st_mode & 07777, (unsigned)st.st_gid);
    return t_finish();
}
