/* RLIMIT_AS: the soft limit moves freely up to the hard one (which inside is user_space_size),
 * and is the one enforced. */
#include "common.h"
#include <sys/resource.h>
#include <sys/mman.h>
int main(int argc, char **argv) {
    scratch_enter(argc, argv);
    struct rlimit rl, got;
    OK("get", getrlimit(RLIMIT_AS, &rl));
    /* natively the limit is usually infinite: set a hard limit first */
    rlim_t hard = 1UL << 30;
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > hard) {
        struct rlimit h = {hard, hard};
        OK("set hard", setrlimit(RLIMIT_AS, &h));
    } else {
        hard = rl.rlim_max;
        printf("set hard: ok\n");
    }
    struct rlimit low = {hard / 2, hard};
    OK("lower soft", setrlimit(RLIMIT_AS, &low));
    getrlimit(RLIMIT_AS, &got);
    printf("soft is half: %d, hard kept: %d\n", got.rlim_cur == hard / 2, got.rlim_max == hard);
    struct rlimit up = {hard, hard};
    OK("raise soft to hard", setrlimit(RLIMIT_AS, &up));
    getrlimit(RLIMIT_AS, &got);
    printf("soft is hard: %d\n", got.rlim_cur == hard);
    struct rlimit over = {hard + 4096, hard};
    ERR("soft above hard", setrlimit(RLIMIT_AS, &over), EINVAL);
    /* the soft limit is the one enforced: a mapping above it fails until it is raised */
    size_t big = hard / 2;
    {
        struct rlimit small = {hard / 4, hard};
        OK("soft a quarter", setrlimit(RLIMIT_AS, &small));
        void *p = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        printf("map above soft: %s\n", p == MAP_FAILED ? errname(errno) : "mapped");
        if (p != MAP_FAILED) munmap(p, big);
        OK("soft back to hard", setrlimit(RLIMIT_AS, &up));
        p = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        printf("map below soft: %s\n", p == MAP_FAILED ? errname(errno) : "mapped");
        if (p != MAP_FAILED) munmap(p, big);
    }
    struct rlimit lowh = {hard / 4, hard / 2};
    OK("lower hard", setrlimit(RLIMIT_AS, &lowh));
    getrlimit(RLIMIT_AS, &got);
    printf("both lowered: %d\n", got.rlim_cur == hard / 4 && got.rlim_max == hard / 2);
    struct rlimit back = {hard / 2, hard / 2};
    OK("soft up to lowered hard", setrlimit(RLIMIT_AS, &back));
    struct rlimit lim;
    OK("prlimit", prlimit(0, RLIMIT_AS, NULL, &lim));
    printf("prlimit agrees: %d\n", lim.rlim_cur == hard / 2 && lim.rlim_max == hard / 2);
    return t_finish();
}
