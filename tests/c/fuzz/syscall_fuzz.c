/* Random system calls with random arguments, for the LibOS's robustness: whatever a program
 * asks, the LibOS answers (an errno, a result) and lives on; it never fails a call because of
 * an error of its own ("internal error serving ..." in its log) and it keeps serving.
 *
 * Usage: syscall_fuzz SEED CHILDREN CALLS SCRATCH
 * Each child (forked, fds 0-2 on /dev/null, killed after 2 s) makes CALLS calls: a random
 * number drawn from every syscall number except those that would reach outside the child (signals to other
 * processes, writes to other processes' memory, mounts visible to the parent, new processes,
 * the scheduling class of others), with arguments drawn from small integers, -1, large values,
 * flag-like bit patterns, pointers to a buffer of random bytes, to path names in SCRATCH, to
 * unmapped and kernel addresses. The parent then checks that files still work and prints PASS.
 * Not compared with a native run: the calls are random, and some are unsafe on a bare host.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng;

static uint64_t next(void)
{
    /* xorshift64*: a fixed sequence per seed, so a failing seed can be replayed */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ULL;
}

static const int excluded[] = {
    SYS_kill, SYS_tkill, SYS_tgkill, SYS_rt_sigqueueinfo, SYS_rt_tgsigqueueinfo,
    SYS_pidfd_send_signal, SYS_process_vm_writev, SYS_process_vm_readv, SYS_ptrace,
    SYS_clone, SYS_clone3, SYS_fork, SYS_vfork, SYS_execve, SYS_execveat, SYS_exit,
    SYS_exit_group, SYS_reboot, SYS_mount, SYS_umount2, SYS_pivot_root, SYS_move_mount,
    SYS_fsmount, SYS_mount_setattr, SYS_open_tree, SYS_prlimit64, SYS_setrlimit,
    SYS_sched_setscheduler, SYS_sched_setparam, SYS_sched_setattr, SYS_setpriority,
    SYS_ioprio_set, SYS_swapon, SYS_swapoff, SYS_kexec_load, SYS_kexec_file_load,
    SYS_init_module, SYS_finit_module, SYS_delete_module, SYS_acct, SYS_settimeofday,
    SYS_clock_settime, SYS_clock_adjtime, SYS_adjtimex, SYS_rt_sigreturn, SYS_setns,
    SYS_seccomp, SYS_pidfd_getfd, SYS_munmap, SYS_mremap, SYS_mprotect, SYS_brk,
    SYS_arch_prctl, SYS_set_tid_address, SYS_set_robust_list, SYS_rseq, SYS_madvise,
    SYS_sigaltstack, SYS_pause, SYS_vhangup, SYS_sync, SYS_syncfs,
};

static int allowed(long nr)
{
    for (size_t i = 0; i < sizeof excluded / sizeof excluded[0]; i++)
        if (excluded[i] == nr)
            return 0;
    return 1;
}

static char *buf;          /* a page of random bytes, refilled now and then */
static const char *paths[] = {
    "f", "d", "d/f", "l", "missing", ".", "..", "", "/", "/proc/self/status", "/proc/self/fd",
    "/dev/null", "/dev/zero", "/tmp", "d/../f", "f/", "/proc/self/exe", "/proc/1/status",
};

static long arg(void)
{
    uint64_t r = next();
    switch (r % 12) {
    case 0: return 0;
    case 1: return (long)(r >> 8) % 20;                /* small, often a descriptor */
    case 2: return -1;
    case 3: return (long)(r >> 4);                      /* anything */
    case 4: return (long)(1UL << ((r >> 8) % 64));      /* one bit */
    case 5: return (long)((r >> 8) & 0xfffff);          /* flag-like */
    case 6: return (long)(buf + (r >> 8) % 4096);       /* random bytes */
    case 7: return (long)paths[(r >> 8) % (sizeof paths / sizeof paths[0])];
    case 8: return 0x10UL;                              /* unmapped */
    case 9: return (long)0xffff800000000000UL;          /* kernel */
    case 10: return -100;                               /* AT_FDCWD */
    default: return (long)(r >> 8) % 4096;
    }
}

static void child(int calls)
{
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    /* descriptors of every kind the LibOS knows, for the small numbers to land on */
    int sv[2], p[2];
    pipe(p);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    epoll_create1(0);
    eventfd(0, 0);
    memfd_create("fuzz", 0);
    open("d", O_RDONLY | O_DIRECTORY);
    open("f", O_PATH);
    open("f", O_RDWR);
    open("/proc/self/status", O_RDONLY);
    socket(AF_INET, SOCK_STREAM, 0);
    socket(AF_INET6, SOCK_DGRAM, 0);
    inotify_init1(0);
    signalfd(-1, &(sigset_t){0}, 0);
    timerfd_create(CLOCK_MONOTONIC, 0);
    alarm(1);
    for (int i = 0; i < calls; i++) {
        if (i % 64 == 0)
            for (int k = 0; k < 4096; k += 8)
                *(uint64_t *)(buf + k) = next();
        long nr = (long)(next() % 374);  /* 0-334, then 424-462 (x86-64 has none between) */
        if (nr > 334)
            nr += 424 - 335;
        if (!allowed(nr))
            continue;
        long a[6];
        for (int k = 0; k < 6; k++)
            a[k] = arg();
        syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    }
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s SEED CHILDREN CALLS SCRATCH\n", argv[0]);
        return 2;
    }
    uint64_t seed = strtoull(argv[1], NULL, 0);
    int children = atoi(argv[2]), calls = atoi(argv[3]);
    const char *scratch = argv[4];
    buf = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mkdir(scratch, 0777);
    int died = 0;
    for (int c = 0; c < children; c++) {
        char dir[256];
        snprintf(dir, sizeof dir, "%s/c%d", scratch, c);
        mkdir(dir, 0777);
        if (chdir(dir) != 0) {
            printf("FAIL chdir %s: %s\n", dir, strerror(errno));
            return 1;
        }
        mkdir("d", 0777);
        close(open("f", O_CREAT | O_WRONLY, 0644));
        close(open("d/f", O_CREAT | O_WRONLY, 0644));
        symlink("f", "l");
        rng = seed * 1000003 + (uint64_t)c + 1;
        pid_t pid = fork();
        if (pid < 0) {
            printf("FAIL fork: %s\n", strerror(errno));
            return 1;
        }
        if (pid == 0)
            child(calls);
        int st;
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
            pid_t w = waitpid(pid, &st, WNOHANG);
            if (w == pid)
                break;
            clock_gettime(CLOCK_MONOTONIC, &t);
            if (t.tv_sec - t0.tv_sec >= 2)
                kill(pid, SIGKILL);  /* stuck in a call: the kill must still end it */
            if (t.tv_sec - t0.tv_sec >= 20) {
                printf("FAIL child %d (seed %llu) did not end 20 s after SIGKILL\n", c,
                       (unsigned long long)seed);
                return 1;
            }
            usleep(2000);
        }
        if (WIFSIGNALED(st))
            died++;
        if (chdir("/") != 0)
            return 1;
    }
    /* the LibOS still serves: a file is created, written, read back, listed */
    char path[256];
    snprintf(path, sizeof path, "%s/after", scratch);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    if (fd < 0 || write(fd, "still here", 10) != 10 || pread(fd, path, 10, 0) != 10 ||
        memcmp(path, "still here", 10) != 0) {
        printf("FAIL the LibOS no longer serves files: %s\n", strerror(errno));
        return 1;
    }
    close(fd);
    printf("children %d, ended by a signal %d\nPASS\n", children, died);
    return 0;
}
