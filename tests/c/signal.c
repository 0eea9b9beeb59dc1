/* Signals: sigaction (SA_SIGINFO, SA_RESTART, SA_RESETHAND, SA_NODEFER), masks with
 * sigprocmask and pthread_sigmask, pending and coalesced signals, queued real-time signals,
 * sigaltstack, SIGCHLD from a child's exit, kill/tgkill/tkill/sigqueue, a fault's siginfo. */
#include "common.h"
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>

static pid_t gettid_(void)
{
    return (pid_t)syscall(SYS_gettid);
}

static volatile sig_atomic_t hits;
static volatile int last_signo, last_code, last_value, last_pid_is_me, last_tid_ok;
static volatile pid_t expected_tid;
static volatile int rt_order[8], rt_count;

static void on_info(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    hits++;
    last_signo = sig;
    last_code = si->si_code;
    last_pid_is_me = si->si_pid == getpid();
    if (si->si_code == SI_QUEUE)
        last_value = si->si_value.sival_int;
    last_tid_ok = expected_tid == 0 || gettid_() == expected_tid;
}

static void on_rt(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (rt_count < 8)
        rt_order[rt_count++] = (sig - SIGRTMIN) * 100 + si->si_value.sival_int;
}

static void on_plain(int sig)
{
    (void)sig;
    hits++;
}

static char *alt_base;
static size_t alt_size;
static volatile int on_alt, alt_flag_seen;

static void on_alt_handler(int sig)
{
    (void)sig;
    char local;
    on_alt = &local >= alt_base && &local < alt_base + alt_size;
    stack_t cur;
    sigaltstack(NULL, &cur);
    alt_flag_seen = (cur.ss_flags & SS_ONSTACK) != 0;
}

static volatile int nodefer_depth, nodefer_max, nodefer_calls;

/* Raises its own signal twice more: with SA_NODEFER it nests (delivered at once), without it
 * each stays pending until the handler returns. */
static void on_nodefer(int sig)
{
    nodefer_depth++;
    nodefer_calls++;
    if (nodefer_depth > nodefer_max)
        nodefer_max = nodefer_depth;
    if (nodefer_calls < 3)
        raise(sig);
    nodefer_depth--;
}

static volatile int chld_code, chld_status, chld_pid_ok;
static volatile pid_t chld_expected;

static void on_chld(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    hits++;
    chld_code = si->si_code;
    chld_status = si->si_status;
    chld_pid_ok = si->si_pid == chld_expected;
}

static sigjmp_buf jb;
static volatile int fault_code;
static void *volatile fault_addr;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    fault_code = si->si_code;
    fault_addr = si->si_addr;
    siglongjmp(jb, 1);
}

static void set_handler(int sig, void (*fn)(int, siginfo_t *, void *), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(sig, &sa, NULL) == 0);
}

static const char *disposition(int sig)
{
    struct sigaction sa;
    sigaction(sig, NULL, &sa);
    if (sa.sa_handler == SIG_DFL)
        return "default";
    if (sa.sa_handler == SIG_IGN)
        return "ignored";
    return "handler";
}

/* Blocks SIGUSR1 in itself, then waits until main asks it to leave. */
static volatile int thread_ready, thread_leave;
static volatile pid_t thread_tid;
static void *masked_thread(void *arg)
{
    (void)arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    thread_tid = gettid_();
    thread_ready = 1;
    while (!thread_leave)
        usleep(1000);
    return NULL;
}

int main(int argc, char **argv)
{
    scratch_enter(argc, argv);
    pid_t me = getpid();

    /* SA_SIGINFO from kill and sigqueue */
    set_handler(SIGUSR1, on_info, 0);
    CHECK(kill(me, SIGUSR1) == 0);
    printf("kill: hits %d signo %d code %s pid-is-me %d\n", (int)hits, last_signo,
           last_code == SI_USER ? "SI_USER" : "?", last_pid_is_me);
    CHECK(sigqueue(me, SIGUSR1, (union sigval){.sival_int = 42}) == 0);
    printf("sigqueue: hits %d code %s value %d\n", (int)hits, last_code == SI_QUEUE ? "SI_QUEUE" : "?",
           last_value);
    CHECK(raise(SIGUSR1) == 0);
    printf("raise: hits %d code %s\n", (int)hits, last_code == SI_TKILL ? "SI_TKILL" : "?");

    /* the old action comes back from sigaction */
    struct sigaction old;
    CHECK(sigaction(SIGUSR1, NULL, &old) == 0);
    printf("old action has SA_SIGINFO: %d, is our handler: %d\n", (old.sa_flags & SA_SIGINFO) != 0,
           old.sa_sigaction == on_info);
    ERR("sigaction SIGKILL", sigaction(SIGKILL, &old, NULL), EINVAL);
    ERR("sigaction SIGSTOP", sigaction(SIGSTOP, &old, NULL), EINVAL);
    ERR("sigaction signal 0", sigaction(0, &old, NULL), EINVAL);
    ERR("sigaction signal 65", sigaction(65, &old, NULL), EINVAL);

    /* SA_RESETHAND: one delivery, then the default action */
    set_handler(SIGUSR2, on_info, SA_RESETHAND);
    hits = 0;
    raise(SIGUSR2);
    printf("SA_RESETHAND: hits %d, then %s\n", (int)hits, disposition(SIGUSR2));

    /* SA_NODEFER: the handler can be re-entered by its own signal */
    struct sigaction nd;
    memset(&nd, 0, sizeof nd);
    nd.sa_handler = on_nodefer;
    nd.sa_flags = SA_NODEFER;
    CHECK(sigaction(SIGUSR2, &nd, NULL) == 0);
    raise(SIGUSR2);
    printf("SA_NODEFER nesting depth: %d, calls %d\n", nodefer_max, nodefer_calls);
    nodefer_max = nodefer_calls = 0;
    nd.sa_flags = 0;
    CHECK(sigaction(SIGUSR2, &nd, NULL) == 0);
    raise(SIGUSR2);
    printf("without SA_NODEFER nesting depth: %d, calls %d\n", nodefer_max, nodefer_calls);

    /* blocked signals stay pending; standard signals coalesce */
    signal(SIGUSR2, on_plain);
    sigset_t set, oldset, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    CHECK(sigprocmask(SIG_BLOCK, &set, &oldset) == 0);
    hits = 0;
    for (int i = 0; i < 3; i++)
        kill(me, SIGUSR2);
    sigpending(&pend);
    printf("blocked: hits %d, pending USR2 %d, pending USR1 %d\n", (int)hits,
           sigismember(&pend, SIGUSR2), sigismember(&pend, SIGUSR1));
    CHECK(sigprocmask(SIG_SETMASK, &oldset, NULL) == 0);
    printf("after unblock: hits %d (coalesced)\n", (int)hits);
    /* a thread-directed one (raise) is pending apart from the process-wide one (kill) */
    hits = 0;
    CHECK(sigprocmask(SIG_BLOCK, &set, &oldset) == 0);
    raise(SIGUSR2);
    raise(SIGUSR2);
    kill(me, SIGUSR2);
    CHECK(sigprocmask(SIG_SETMASK, &oldset, NULL) == 0);
    printf("raise twice and kill once, blocked, then unblocked: hits %d\n", (int)hits);
    sigpending(&pend);
    printf("pending after unblock: %d\n", sigismember(&pend, SIGUSR2));
    ERR("sigprocmask bad how", sigprocmask(99, &set, NULL), EINVAL);
    /* SIGKILL and SIGSTOP cannot be blocked */
    sigset_t all, got;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &oldset);
    sigprocmask(SIG_SETMASK, NULL, &got);
    printf("block all: KILL %d STOP %d TERM %d\n", sigismember(&got, SIGKILL),
           sigismember(&got, SIGSTOP), sigismember(&got, SIGTERM));
    sigprocmask(SIG_SETMASK, &oldset, NULL);

    /* real-time signals queue, lowest number first, each in order */
    set_handler(SIGRTMIN, on_rt, 0);
    set_handler(SIGRTMIN + 1, on_rt, 0);
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN);
    sigaddset(&set, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &set, &oldset);
    for (int i = 1; i <= 3; i++)
        sigqueue(me, SIGRTMIN + 1, (union sigval){.sival_int = i});
    for (int i = 1; i <= 2; i++)
        sigqueue(me, SIGRTMIN, (union sigval){.sival_int = i});
    sigprocmask(SIG_SETMASK, &oldset, NULL);
    printf("real-time deliveries:");
    for (int i = 0; i < rt_count; i++)
        printf(" %d", rt_order[i]);
    printf("\n");

    /* SIG_IGN discards; a pending ignored signal is dropped */
    signal(SIGUSR2, SIG_IGN);
    raise(SIGUSR2);
    sigpending(&pend);
    printf("ignored signal pending: %d\n", sigismember(&pend, SIGUSR2));
    signal(SIGUSR2, SIG_DFL);

    /* sigaltstack: the handler runs on it, and sees SS_ONSTACK */
    alt_size = 64 * 1024;
    alt_base = malloc(alt_size);
    stack_t ss = {.ss_sp = alt_base, .ss_size = alt_size, .ss_flags = 0};
    OK("sigaltstack", sigaltstack(&ss, NULL));
    stack_t q;
    CHECK(sigaltstack(NULL, &q) == 0);
    printf("altstack read back: size ok %d, flags %d\n", q.ss_size == alt_size && q.ss_sp == alt_base,
           q.ss_flags);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alt_handler;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR2, &sa, NULL);
    raise(SIGUSR2);
    printf("handler on the alternate stack: %d, SS_ONSTACK inside: %d\n", on_alt, alt_flag_seen);
    sa.sa_flags = 0;
    sigaction(SIGUSR2, &sa, NULL);
    raise(SIGUSR2);
    printf("without SA_ONSTACK on it: %d\n", on_alt);
    stack_t tiny = {.ss_sp = alt_base, .ss_size = 512, .ss_flags = 0};
    ERR("sigaltstack too small", sigaltstack(&tiny, NULL), ENOMEM);
    stack_t bad = {.ss_sp = alt_base, .ss_size = alt_size, .ss_flags = 12345};
    ERR("sigaltstack bad flags", sigaltstack(&bad, NULL), EINVAL);
    stack_t dis = {.ss_flags = SS_DISABLE};
    OK("sigaltstack disable", sigaltstack(&dis, NULL));
    signal(SIGUSR2, SIG_DFL);

    /* SIGCHLD when a child exits */
    set_handler(SIGCHLD, on_chld, 0);
    hits = 0;
    fflush(stdout);
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &oldset);
    pid_t c = fork();
    if (c == 0)
        _exit(3);
    chld_expected = c;
    sigsuspend(&oldset); /* returns after the handler ran */
    sigprocmask(SIG_SETMASK, &oldset, NULL);
    printf("SIGCHLD: hits %d code %s status %d pid ok %d\n", (int)hits,
           chld_code == CLD_EXITED ? "CLD_EXITED" : "?", chld_status, chld_pid_ok);
    CHECK(wait_child(c) == 3);
    /* SIGCHLD ignored: children are reaped by the kernel */
    signal(SIGCHLD, SIG_IGN);
    c = fork();
    if (c == 0)
        _exit(0);
    int status;
    ERR("wait with SIGCHLD ignored", waitpid(c, &status, 0), ECHILD);
    signal(SIGCHLD, SIG_DFL);

    /* thread-directed signals: tgkill/tkill reach the named thread; a process signal skips a
     * thread that blocks it */
    pthread_t th;
    CHECK(pthread_create(&th, NULL, masked_thread, NULL) == 0);
    while (!thread_ready)
        usleep(1000);
    set_handler(SIGUSR2, on_info, 0);
    expected_tid = thread_tid;
    last_tid_ok = 0;
    hits = 0;
    OK("tgkill to the thread", syscall(SYS_tgkill, me, thread_tid, SIGUSR2));
    for (int i = 0; i < 2000 && hits < 1; i++)
        usleep(1000);
    printf("  ran on the thread: %d\n", last_tid_ok);
    last_tid_ok = 0;
    OK("tkill to the thread", syscall(SYS_tkill, thread_tid, SIGUSR2));
    for (int i = 0; i < 2000 && hits < 2; i++)
        usleep(1000);
    printf("  ran on the thread: %d\n", last_tid_ok);
    expected_tid = gettid_();
    last_tid_ok = 0;
    for (int i = 0; i < 5; i++)
        kill(me, SIGUSR1);
    printf("process SIGUSR1 ran on main, not the blocking thread: %d\n", last_tid_ok);
    last_tid_ok = 0;
    OK("pthread_kill to main", pthread_kill(pthread_self(), SIGUSR2));
    printf("  ran on main: %d\n", last_tid_ok);
    ERR("tgkill wrong tgid", syscall(SYS_tgkill, 0x3ffffff0, thread_tid, SIGUSR2), ESRCH);
    ERR("tgkill bad signal", syscall(SYS_tgkill, me, thread_tid, 99), EINVAL);
    thread_leave = 1;
    CHECK(pthread_join(th, NULL) == 0);
    expected_tid = 0;

    /* kill errors */
    ERR("kill bad signal", kill(me, 999), EINVAL);
    ERR("kill no such process", kill(0x3ffffff0, SIGUSR1), ESRCH);
    OK("kill signal 0", kill(me, 0));

    /* a fault's siginfo: SEGV_MAPERR and SEGV_ACCERR at the faulting address */
    set_handler(SIGSEGV, on_segv, SA_NODEFER);
    char *page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (sigsetjmp(jb, 1) == 0)
        page[100] = 1;
    printf("write to read-only page: %s at the address %d\n",
           fault_code == SEGV_ACCERR ? "SEGV_ACCERR" : "?", fault_addr == page + 100);
    munmap(page, 4096);
    if (sigsetjmp(jb, 1) == 0)
        *(volatile char *)(page + 8) = 1;
    printf("write to unmapped page: %s at the address %d\n",
           fault_code == SEGV_MAPERR ? "SEGV_MAPERR" : "?", fault_addr == page + 8);
    signal(SIGSEGV, SIG_DFL);

    /* a signal's default action, seen by the parent */
    c = fork();
    if (c == 0) {
        signal(SIGUSR1, SIG_DFL);
        raise(SIGUSR1);
        _exit(0);
    }
    printf("child killed by default SIGUSR1: %d\n", wait_child(c));
    c = fork();
    if (c == 0) {
        signal(SIGUSR1, SIG_DFL);
        signal(SIGWINCH, SIG_DFL);
        raise(SIGWINCH); /* default: ignored */
        _exit(5);
    }
    printf("child after default SIGWINCH: %d\n", wait_child(c));
    return t_finish();
}
