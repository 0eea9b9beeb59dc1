/* ".." out of a hostfs mount must stay inside the LibOS's own tree. */
#include "sec.h"

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/../../../../etc/shadow", MOUNT);
    try_open("mount/../../../../etc/shadow", AT_FDCWD, p);
    snprintf(p, sizeof p, "%s/../../../../../../..%s", MOUNT, SECRET);
    try_open("mount/../..(x7)/<secret>", AT_FDCWD, p);
    /* the secret is a sibling of the hostfs source directory on the host */
    const char *base = strrchr(SECRET, '/');
    snprintf(p, sizeof p, "%s/..%s", MOUNT, base);
    try_open("mount/../<secret name>", AT_FDCWD, p);
    try_open("secret by its host path", AT_FDCWD, SECRET);
    try_open("/etc/shadow", AT_FDCWD, "/etc/shadow");
    if (chdir(MOUNT) == 0) {
        snprintf(p, sizeof p, "../../../../../../..%s", SECRET);
        try_open("chdir mount; relative ../..", AT_FDCWD, p);
        snprintf(p, sizeof p, "..%s", base);
        try_open("chdir mount; ../<secret name>", AT_FDCWD, p);
        char cwd[PATH_MAX];
        if (chdir("../../../../..") == 0 && getcwd(cwd, sizeof cwd))
            printf("cwd after chdir ../..(x5) is /: %s\n", strcmp(cwd, "/") == 0 ? "contained" : "ESCAPED");
        else
            printf("cwd after chdir ../..(x5) is /: refused %s\n", errname(errno));
    } else {
        printf("chdir to mount: refused %s\n", errname(errno));
    }
    return sec_finish();
}
