/* io_uring's operations bypass seccomp, so io_uring_setup itself must be refused. */
#include "sec.h"
#include <stdint.h>

static long setup(void)
{
    uint32_t params[30] = {0}; /* struct io_uring_params is 120 bytes */
    return syscall(425 /* io_uring_setup */, 8, params);
}
static long enter(void) { return syscall(426 /* io_uring_enter */, 3, 1, 1, 0, NULL, 0); }
static long reg(void) { return syscall(427 /* io_uring_register */, 3, 0, NULL, 0); }

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    PROBE("io_uring_setup", setup);
    PROBE("io_uring_enter", enter);
    PROBE("io_uring_register", reg);
    return sec_finish();
}
