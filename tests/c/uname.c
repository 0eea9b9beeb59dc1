/* uname: fields that are the same on every x86-64 Linux (sysname, machine, shape of release). */
#include "common.h"
#include <sys/utsname.h>

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct utsname u;
    OK("uname", uname(&u));
    printf("sysname: %s\n", u.sysname);
    printf("machine: %s\n", u.machine);
    int maj = 0, min = 0;
    printf("release parses as N.N: %d\n", sscanf(u.release, "%d.%d", &maj, &min) == 2);
    printf("release at least 3.x: %d\n", maj >= 3);
    printf("nodename non-empty: %d\n", u.nodename[0] != 0);
    printf("version non-empty: %d\n", u.version[0] != 0);
    char host[256];
    OK("gethostname", gethostname(host, sizeof host));
    CHECK(strcmp(host, u.nodename) == 0);
    ERR("uname NULL", uname(NULL), EFAULT);
    return t_finish();
}
