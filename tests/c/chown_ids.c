/* Owner ids are unsigned 32-bit: chown/fchown/lchown/fchownat to ids of 2^31 and above (up to
 * 2^32-2) succeed and stat shows them; -1 (0xffffffff) means "unchanged"; chown of a regular
 * file drops its set-user-id bit (and set-group-id with group exec), even for root. */
#include "common.h"
#include <stdint.h>

static void owner(const char *label, const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        printf("%s: stat %s\n", label, errname(errno));
        t_failures++;
        return;
    }
    printf("%s: uid %u gid %u mode %o\n", label, (unsigned)st.st_uid, (unsigned)st.st_gid,
           st.st_mode & 07777);
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    CHECK(write_file("f", "x") == 0);
    OK("chown 2^31", chown("f", 2147483648u, 2147483649u));
    owner("after chown 2^31", "f");
    OK("chown -1 keeps both", chown("f", (uid_t)-1, (gid_t)-1));
    owner("after chown -1 -1", "f");
    OK("chown 2^32-2", chown("f", 4294967294u, (gid_t)-1));
    owner("uid 2^32-2, gid kept", "f");
    OK("chown gid only", chown("f", (uid_t)-1, 3000000000u));
    owner("gid 3e9, uid kept", "f");

    int fd = open("f", O_RDONLY);
    OK("fchown 2^31+5", fchown(fd, 2147483653u, 2147483653u));
    struct stat st;
    OK("fstat", fstat(fd, &st));
    printf("fstat: uid %u gid %u\n", (unsigned)st.st_uid, (unsigned)st.st_gid);
    close(fd);

    CHECK(symlink("f", "l") == 0);
    OK("lchown symlink", lchown("l", 4000000000u, 4000000001u));
    owner("symlink", "l");
    owner("target unchanged", "f");
    OK("fchownat nofollow", fchownat(AT_FDCWD, "l", 2147483647u, 2147483648u,
                                     AT_SYMLINK_NOFOLLOW));
    owner("symlink again", "l");
    CHECK(mkdir("d", 0755) == 0);
    OK("chown dir", chown("d", 4294967294u, 4294967294u));
    owner("dir", "d");

    struct statx sx;
    OK("statx", statx(AT_FDCWD, "f", 0, STATX_UID | STATX_GID, &sx));
    printf("statx: uid %u gid %u\n", sx.stx_uid, sx.stx_gid);

    /* chown of a regular file drops set-id bits, whoever asks */
    OK("chmod 06755", chmod("f", 06755));
    owner("set-id", "f");
    OK("chown to same ids", chown("f", 2147483653u, 2147483653u));
    owner("after chown, set-id dropped", "f");
    OK("chmod 04755", chmod("f", 04755));
    OK("chown -1 -1 of set-id", chown("f", (uid_t)-1, (gid_t)-1));
    owner("set-id dropped by chown -1 -1", "f");
    OK("chmod 02745", chmod("f", 02745));
    OK("chown -1 -1", chown("f", (uid_t)-1, (gid_t)-1));
    owner("setgid without group exec kept", "f");
    OK("chmod 02775 dir", chmod("d", 02775));
    OK("chown dir", chown("d", 0, 0));
    owner("dir keeps setgid", "d");

    OK("chown back", chown("f", 0, 0));
    owner("back to root", "f");
    return t_finish();
}
