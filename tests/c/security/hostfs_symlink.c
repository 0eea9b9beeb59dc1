/* Symlinks inside a hostfs mount that point out of it (made on the host or by the program). */
#include "sec.h"

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    char p[PATH_MAX * 2], t[PATH_MAX * 2];
    const char *base = strrchr(SECRET, '/');
    /* made by the harness on the host: link_abs -> <secret>, link_rel -> ../<secret name>,
     * link_root -> / */
    snprintf(p, sizeof p, "%s/link_abs", MOUNT);
    try_open("host-made absolute link", AT_FDCWD, p);
    snprintf(p, sizeof p, "%s/link_rel", MOUNT);
    try_open("host-made relative link", AT_FDCWD, p);
    snprintf(p, sizeof p, "%s/link_root%s", MOUNT, SECRET);
    try_open("host-made link to /, then secret", AT_FDCWD, p);

    /* made from inside */
    snprintf(p, sizeof p, "%s/mine_abs", MOUNT);
    unlink(p);
    if (symlink(SECRET, p) == 0)
        try_open("own absolute link in hostfs", AT_FDCWD, p);
    else
        printf("own absolute link in hostfs: refused %s\n", errname(errno));
    unlink(p);
    snprintf(p, sizeof p, "%s/mine_rel", MOUNT);
    snprintf(t, sizeof t, "../../../../..%s", SECRET);
    unlink(p);
    if (symlink(t, p) == 0)
        try_open("own relative ../.. link in hostfs", AT_FDCWD, p);
    else
        printf("own relative link in hostfs: refused %s\n", errname(errno));
    unlink(p);
    snprintf(p, sizeof p, "%s/mine_sib", MOUNT);
    snprintf(t, sizeof t, "..%s", base);
    unlink(p);
    if (symlink(t, p) == 0)
        try_open("own ../<secret name> link in hostfs", AT_FDCWD, p);
    else
        printf("own sibling link in hostfs: refused %s\n", errname(errno));
    unlink(p);
    /* a link from the LibOS's /tmp to the hostfs mount's parent */
    unlink("/tmp/sec-link");
    snprintf(t, sizeof t, "%s/..", MOUNT);
    if (symlink(t, "/tmp/sec-link") == 0) {
        snprintf(p, sizeof p, "/tmp/sec-link%s", base);
        try_open("/tmp link to mount/.., then secret name", AT_FDCWD, p);
        unlink("/tmp/sec-link");
    }
    /* a hard link of the secret by its host path */
    snprintf(p, sizeof p, "%s/hard", MOUNT);
    if (link(SECRET, p) == 0) {
        try_open("hard link of host secret", AT_FDCWD, p);
        unlink(p);
    } else {
        printf("hard link of host secret: refused %s\n", errname(errno));
    }
    return sec_finish();
}
