/* The i386 entry (int 0x80) must not bypass the filter: its numbers differ from x86-64's. */
#include "sec.h"
#include <sys/mman.h>

static char *low;

static long int80(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(nr), "b"(a), "c"(b), "d"(c)
                     : "memory", "r8", "r9", "r10", "r11");
    if (ret < 0 && ret > -4096) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
}

static long i386_getpid(void) { return int80(20, 0, 0, 0); }
static long i386_open(void) { return int80(5, (long)(unsigned long)low, O_RDONLY, 0); }
static long i386_mkdir(void) { return int80(39, (long)(unsigned long)(low + 2048), 0755, 0); }
static long i386_kill(void) { return int80(37, HOSTPID, 0, 0); }

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    /* pointers passed to int 0x80 are 32-bit: the strings live below 4 GiB */
    low = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (low == MAP_FAILED) {
        printf("mmap MAP_32BIT: %s\n", errname(errno));
        return 1;
    }
    snprintf(low, 2048, "%s", SECRET);
    snprintf(low + 2048, 2048, "/tmp/int80-made-this");
    PROBE("int 0x80 getpid", i386_getpid);
    PROBE("int 0x80 open of host secret", i386_open);
    PROBE("int 0x80 mkdir", i386_mkdir);
    PROBE("int 0x80 kill(host pid, 0)", i386_kill);
    return sec_finish();
}
