/* occlum: the native front of the `occlum` command, installed in place of the console script
 * by scripts/setup.sh (occlum/cli/front.py compiles it).
 *
 * Two commands are on every user's path: `occlum exec` on a started instance and `occlum run`
 * through the user's zygote. A Python client pays 15-50 ms before its first useful system call
 * (the interpreter, the console script's imports); this front decides in C:
 *
 *   - a plain `occlum [--instance-dir DIR] exec [--tty|--no-tty] PROGRAM [ARGS...]` becomes
 *     DIR/run/occlum-exec, the native client `occlum start` put there (as cli/entry.py does);
 *   - `occlum [--instance-dir DIR] run ...` is sent to a listening zygote exactly as
 *     cli/fastrun.py sends it (the request of cli/zygote_wire.py, descriptors 0-2 and the
 *     working directory, the relayed signals), and this process ends as the run did;
 *   - everything else, and whatever the front cannot finish itself, becomes the Python command
 *     line (cli/entry.py) with the same arguments, before anything has run: no zygote
 *     listening (Python starts one), a zygote that declined (then Python takes the direct path
 *     without asking again), the shell's completion requests, --help, errors.
 *
 * The interpreter, the package directory and its version are compiled in (OCCLUM_PYTHON,
 * OCCLUM_PACKAGE, OCCLUM_VERSION): they make the identity a zygote checks, so a front built
 * for another LibOS is declined, never served by the wrong code.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef OCCLUM_PYTHON
#error "OCCLUM_PYTHON, OCCLUM_PACKAGE and OCCLUM_VERSION are given by occlum/cli/front.py"
#endif

extern char **environ;

#define NATIVE_CLIENT_NAME "occlum-exec"
#define REQUEST_TAG "occlum-run-1"
#define DISABLE_ENV "OCCLUM_NO_ZYGOTE"

/* What the Python command line is told: go on as usual, or run directly (a zygote declined). */
static const char PY_MAIN[] =
    "import sys; sys.argv = sys.argv[1:]; from occlum.cli.entry import main; sys.exit(main())";
static const char PY_DIRECT[] =
    "import sys; sys.argv = sys.argv[1:]; from occlum.cli.entry import main; "
    "sys.exit(main(zygote=False))";

static int g_argc;
static char **g_argv;

/* Become the Python command line; it redoes the parsing, so what it prints is the CLI's own.
 * -P: the working directory is not put on the module path (as it is not for a script). */
static void __attribute__((noreturn)) python(const char *code) {
    char **args = calloc((size_t)g_argc + 5, sizeof *args);
    if (args != NULL) {
        int n = 0;
        args[n++] = (char *)OCCLUM_PYTHON;
        args[n++] = (char *)"-P";
        args[n++] = (char *)"-c";
        args[n++] = (char *)code;
        for (int i = 0; i < g_argc; i++)
            args[n++] = g_argv[i];
        args[n] = NULL;
        execv(OCCLUM_PYTHON, args);
    }
    static const char msg[] = "occlum: error: cannot run the Python interpreter " OCCLUM_PYTHON
                              " (run scripts/setup.sh again)\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(127);
}

/* ---- `occlum exec` (cli/entry.py, _plain_exec) ------------------------------------------ */

static int starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void plain_exec(int argc, char **argv) {
    const char *dir = ".";
    int i = 0;
    while (i < argc && strcmp(argv[i], "exec") != 0) {
        if (strcmp(argv[i], "--instance-dir") == 0 && i + 1 < argc) {
            dir = argv[i + 1];
            i += 2;
        } else if (starts_with(argv[i], "--instance-dir=")) {
            dir = argv[i] + strlen("--instance-dir=");
            i += 1;
        } else {
            return;
        }
    }
    int rest = i + 1;
    if (rest >= argc)
        return;
    const char *tty = NULL;
    if (strcmp(argv[rest], "--tty") == 0 || strcmp(argv[rest], "--no-tty") == 0)
        tty = argv[rest++];
    if (rest >= argc || argv[rest][0] == '-')
        return; /* --help, a misspelt option, a missing program: the full command line */
    size_t len = strlen(dir) + sizeof "/run/" NATIVE_CLIENT_NAME;
    char *native = malloc(len);
    char **args = calloc((size_t)(argc - rest) + 6, sizeof *args);
    if (native == NULL || args == NULL)
        return;
    /* os.path.join(dir, "run", NAME): an empty DIR is the working directory */
    snprintf(native, len, "%s%srun/%s", dir, dir[0] != '\0' ? "/" : "", NATIVE_CLIENT_NAME);
    if (access(native, X_OK) != 0)
        return; /* no native client: the Python one */
    int n = 0;
    args[n++] = native;
    args[n++] = (char *)"--instance-dir";
    args[n++] = (char *)dir;
    if (tty != NULL)
        args[n++] = (char *)tty;
    args[n++] = (char *)"--";
    for (int k = rest; k < argc; k++)
        args[n++] = argv[k];
    args[n] = NULL;
    execv(native, args);
    /* it cannot run: the Python command line tries it too, then its own client */
}

/* ---- `occlum run` through the zygote (cli/fastrun.py, run_via_zygote) -------------------- */

static int is_run(int argc, char **argv) {
    int i = 0;
    while (i < argc) {
        if (strcmp(argv[i], "--instance-dir") == 0)
            i += 2;
        else if (starts_with(argv[i], "--instance-dir="))
            i += 1;
        else
            return strcmp(argv[i], "run") == 0 && i + 1 < argc;
    }
    return 0;
}

static int usable_stdio(void) {
    struct stat st;
    for (int fd = 0; fd < 3; fd++) {
        if (fstat(fd, &st) != 0)
            return 0; /* closed: a child could not look the same */
        if (isatty(fd))
            return 0; /* the terminal's session and foreground: the direct path */
    }
    return 1;
}

/* The user's directory of zygote sockets (zygote_wire.zygote_dir), or 0 if not safely ours. */
static int zygote_dir(char *out, size_t size) {
    uid_t uid = getuid();
    const char *runtime = getenv("XDG_RUNTIME_DIR");
    int n = runtime != NULL && runtime[0] == '/'
                ? snprintf(out, size, "%s/occlum", runtime)
                : snprintf(out, size, "/tmp/occlum-zygote-%u", (unsigned)uid);
    if (n < 0 || (size_t)n >= size)
        return 0;
    if (mkdir(out, 0700) != 0 && errno != EEXIST)
        return 0;
    struct stat st;
    if (lstat(out, &st) != 0)
        return 0;
    return S_ISDIR(st.st_mode) && st.st_uid == uid && (st.st_mode & 077) == 0;
}

static const char IDENTITY[] = OCCLUM_PYTHON "\n" OCCLUM_PACKAGE "\n" OCCLUM_VERSION;

/* The socket's name (zygote_wire.zygote_key): FNV-1a of the identity. */
static uint64_t zygote_key(void) {
    uint64_t h = 0xCBF29CE484222325ULL;
    for (const unsigned char *p = (const unsigned char *)IDENTITY; *p; p++)
        h = (h ^ *p) * 0x100000001B3ULL;
    return h;
}

/* A growable request buffer. */
struct buf {
    char *p;
    size_t len, cap;
};

static int put(struct buf *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static int put_field(struct buf *b, const char *s) {
    return put(b, "\0", 1) | put(b, s, strlen(s));
}

static int g_sock = -1;

static const int RELAYED[] = {SIGINT,  SIGTERM, SIGHUP,  SIGQUIT,
                              SIGWINCH, SIGUSR1, SIGUSR2, SIGALRM};
#define NRELAYED (int)(sizeof RELAYED / sizeof RELAYED[0])

static void forward(int sig) {
    int saved = errno;
    char msg[2] = {'S', (char)sig};
    (void)!send(g_sock, msg, 2, MSG_NOSIGNAL | MSG_DONTWAIT);
    errno = saved;
}

static int send_request(int sock, int argc, char **argv) {
    mode_t umask_now = umask(0);
    umask(umask_now);
    struct buf b = {0};
    char number[32];
    int bad = put(&b, "\0\0\0\0", 4) | put(&b, REQUEST_TAG, strlen(REQUEST_TAG)) |
              put_field(&b, IDENTITY);
    snprintf(number, sizeof number, "%o", (unsigned)umask_now);
    bad |= put_field(&b, number);
    snprintf(number, sizeof number, "%d", argc);
    bad |= put_field(&b, number);
    for (int i = 0; i < argc; i++)
        bad |= put_field(&b, argv[i]);
    /* the environment as os.environb holds it: entries with a '=' */
    for (char **e = environ; *e != NULL; e++)
        if (strchr(*e, '=') != NULL)
            bad |= put_field(&b, *e);
    if (bad)
        return -1;
    uint32_t body = (uint32_t)(b.len - 4);
    for (int i = 0; i < 4; i++)
        b.p[i] = (char)(body >> (8 * i) & 0xFF);
    int cwd = open(".", O_PATH | O_CLOEXEC);
    if (cwd < 0)
        return -1;
    int fds[4] = {0, 1, 2, cwd};
    union {
        char buf[CMSG_SPACE(sizeof fds)];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = {.iov_base = b.p, .iov_len = b.len};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(c), fds, sizeof fds);
    ssize_t sent;
    do
        sent = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    close(cwd);
    if (sent < 0)
        return -1;
    for (size_t off = (size_t)sent; off < b.len;) {
        ssize_t w = send(sock, b.p + off, b.len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    free(b.p);
    return 0;
}

/* The run's wait status after "X", or -1 if the zygote went away first. */
static int wait_status(int sock, const char *already, size_t have) {
    char buf[512];
    size_t len = 0;
    memcpy(buf, already, have);
    len = have;
    for (;;) {
        for (size_t at = 0; at < len; at++) {
            if (buf[at] == 'X' && len >= at + 5) {
                uint32_t s = 0;
                for (int i = 0; i < 4; i++)
                    s |= (uint32_t)(unsigned char)buf[at + 1 + i] << (8 * i);
                return (int)s;
            }
        }
        if (len > sizeof buf - 64) { /* keep a possible "X" and what follows it */
            memmove(buf, buf + len - 8, 8);
            len = 8;
        }
        ssize_t n = recv(sock, buf + len, 64, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        len += (size_t)n;
    }
}

/* The run by the zygote: returns only when nothing has run (then with the Python code that
 * should take over); otherwise ends this process as the run ended. */
static const char *run_via_zygote(int argc, char **argv) {
    const char *off = getenv(DISABLE_ENV);
    if ((off != NULL && off[0] != '\0' && strcmp(off, "0") != 0) || !usable_stdio())
        return PY_MAIN;
    char dir[4096];
    if (!zygote_dir(dir, sizeof dir))
        return PY_MAIN;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int n = snprintf(addr.sun_path, sizeof addr.sun_path, "%s/%016llx.sock", dir,
                     (unsigned long long)zygote_key());
    if (n < 0 || (size_t)n >= sizeof addr.sun_path)
        return PY_MAIN;
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0)
        return PY_MAIN;
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(sock);
        return PY_MAIN; /* none listening: the Python command line starts one */
    }
    g_sock = sock;
    struct sigaction relay[NRELAYED];
    int relayed[NRELAYED] = {0};
    struct sigaction fwd;
    memset(&fwd, 0, sizeof fwd);
    fwd.sa_handler = forward;
    fwd.sa_flags = SA_RESTART;
    sigemptyset(&fwd.sa_mask);
    for (int i = 0; i < NRELAYED; i++) {
        if (sigaction(RELAYED[i], NULL, &relay[i]) == 0 && relay[i].sa_handler != SIG_IGN)
            relayed[i] = sigaction(RELAYED[i], &fwd, NULL) == 0; /* ignored stays ignored */
    }
    int status = -1;
    const char *declined = NULL;
    char first[64];
    ssize_t got = -1;
    if (send_request(sock, argc, argv) != 0) {
        declined = PY_DIRECT;
    } else {
        do
            got = recv(sock, first, 1, 0);
        while (got < 0 && errno == EINTR);
        if (got == 1 && first[0] == 'X') /* a relayed signal ended it before it began */
            status = wait_status(sock, first, 1);
        else if (got == 1 && first[0] == 'R')
            status = wait_status(sock, "", 0);
        else
            declined = PY_DIRECT; /* declined, or a zygote that went away: nothing has run */
    }
    for (int i = 0; i < NRELAYED; i++)
        if (relayed[i])
            sigaction(RELAYED[i], &relay[i], NULL);
    close(sock);
    if (declined != NULL)
        return declined;
    if (status == -1) {
        static const char msg[] = "occlum: error: the zygote serving this run ended\n";
        (void)!write(2, msg, sizeof msg - 1);
        _exit(1);
    }
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        signal(sig, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sig);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        kill(getpid(), sig);
        _exit((128 + sig) & 0xFF);
    }
    if (WIFEXITED(status))
        _exit(WEXITSTATUS(status));
    _exit(WIFSTOPPED(status) ? (128 + WSTOPSIG(status)) & 0xFF : 1);
}

int main(int argc, char **argv) {
    g_argc = argc;
    g_argv = argv;
    const char *completing = getenv("_OCCLUM_COMPLETE");
    if (completing != NULL && completing[0] != '\0')
        python(PY_MAIN);
    plain_exec(argc - 1, argv + 1);
    if (is_run(argc - 1, argv + 1))
        python(run_via_zygote(argc - 1, argv + 1));
    python(PY_MAIN);
}
