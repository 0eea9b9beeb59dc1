/* getrlimit/setrlimit/prlimit: soft <= hard, lowering RLIMIT_NOFILE is enforced. */
#include "common.h"
#include <sys/resource.h>

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    struct rlimit r;
    int res[] = {RLIMIT_NOFILE, RLIMIT_STACK, RLIMIT_AS, RLIMIT_CORE, RLIMIT_NPROC, RLIMIT_DATA};
    const char *names[] = {"NOFILE", "STACK", "AS", "CORE", "NPROC", "DATA"};
    for (int i = 0; i < 6; i++) {
        int rc = getrlimit(res[i], &r);
        printf("%s: %s soft<=hard %d\n", names[i], rc == 0 ? "ok" : errname(errno),
               r.rlim_cur == RLIM_INFINITY ? r.rlim_max == RLIM_INFINITY : r.rlim_cur <= r.rlim_max);
    }
    CHECK(getrlimit(RLIMIT_NOFILE, &r) == 0);
    struct rlimit low = {32, r.rlim_max};
    OK("lower NOFILE", setrlimit(RLIMIT_NOFILE, &low));
    struct rlimit back;
    CHECK(getrlimit(RLIMIT_NOFILE, &back) == 0);
    printf("NOFILE soft now: %ld\n", (long)back.rlim_cur);
    int last = -1, err = 0;
    for (int i = 0; i < 64; i++) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0) {
            err = errno;
            break;
        }
        last = fd;
    }
    printf("highest fd: %d, then %s\n", last, errname(err));
    ERR("dup2 beyond limit", dup2(0, 40), EBADF);
    struct rlimit bad = {100, 10};
    ERR("soft above hard", setrlimit(RLIMIT_NOFILE, &bad), EINVAL);
    struct rlimit old;
    OK("prlimit self", prlimit(0, RLIMIT_NOFILE, NULL, &old));
    printf("prlimit sees soft: %ld\n", (long)old.rlim_cur);
    ERR("bad resource", getrlimit(1000, &r), EINVAL);
    return t_finish();
}
