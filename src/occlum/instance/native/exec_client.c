/* occlum-exec: the native client of a started instance, `occlum exec` without Python.
 *
 *     occlum-exec [--instance-dir DIR] [--tty | --no-tty] PROGRAM [ARGS...]
 *
 * It does what occlum/instance/client.py does for `occlum exec`, byte for byte on the wire:
 * one JSON object per SOCK_SEQPACKET message on DIR/run/occlum.sock, the caller's stdin,
 * stdout and stderr (or a pseudo-terminal's slave side, three times) as SCM_RIGHTS with the
 * exec request; the server answers {"pid": N}, then {"exit": W} (a wait status), or
 * {"error": "...", "code": N} at any point. SIGINT, SIGTERM, SIGHUP and SIGQUIT are relayed as
 * {"op": "signal", "sig": N} when there is no terminal; under one, the terminal is put in raw
 * mode and bytes are copied both ways, SIGWINCH carrying the window size over.
 *
 * Its messages and exit statuses are the Python client's (tests/integration/test_exec_client.py
 * runs both): `occlum: error: ...` and 1 (or the server's code) when nothing ran, 128+N for a
 * program killed by signal N, named in one line unless it is one a user expects.
 *
 * `occlum start` compiles it with the host's cc (occlum/instance/exec_native.py) and puts it at
 * run/occlum-exec; the `occlum` console script hands a plain `occlum exec` to it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

extern char **environ;

#define MAX_MESSAGE (1 << 20)
#define REPLY_TIMEOUT 30 /* seconds, for the server's first answer */

static const char USAGE[] =
    "usage: occlum-exec [--instance-dir DIR] [--tty | --no-tty] PROGRAM [ARGS...]\n";

/* ---- output ------------------------------------------------------------------------------ */

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* The terminal's mode before raw mode, given back however this command ends. */
static struct termios *restore_tc;

/* One line "occlum: error: ..." on stderr and exit with `code`, as UserError in the CLI. */
static void __attribute__((noreturn, format(printf, 2, 3))) fail(int code, const char *fmt, ...) {
    char line[8192];
    if (restore_tc != NULL)
        tcsetattr(0, TCSADRAIN, restore_tc);
    va_list ap;
    int n = snprintf(line, sizeof line, "occlum: error: ");
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    write_all(2, line, (size_t)n);
    _exit(code);
}

/* ---- a growing buffer -------------------------------------------------------------------- */

struct buf {
    char *p;
    size_t len, cap;
};

static void put(struct buf *b, const char *s, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            fail(1, "out of memory");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

/* The length of the valid UTF-8 sequence at s (1-4), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t left) {
    unsigned c = s[0];
    size_t n;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0; /* overlong, or past Unicode */
    if (cp >= 0xd800 && cp <= 0xdfff)
        return 0; /* a surrogate is no character */
    return n;
}

/* A JSON string of the bytes s, as Python's json.dumps writes the str that the
 * surrogateescape decoding of os.environ and sys.argv gives: valid UTF-8 as \uXXXX escapes
 * (ensure_ascii), each byte of invalid UTF-8 as the lone surrogate \udcXX, which the server's
 * os.fsencode turns back into that byte. */
static void put_json_string(struct buf *b, const char *str, size_t len) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    char esc[16];
    put(b, "\"", 1);
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(b, esc, 2);
            i++;
        } else if (c >= 0x20 && c < 0x7f) {
            put(b, (const char *)s + i, 1);
            i++;
        } else if (c < 0x80) {
            const char *named = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t"
                              : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
            if (named != NULL) {
                puts_(b, named);
            } else {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                put(b, esc, 6);
            }
            i++;
        } else {
            size_t n = utf8_seq(s + i, len - i);
            unsigned cp;
            if (n == 0) {
                cp = 0xdc00 | c;
                n = 1;
            } else {
                cp = s[i] & (n == 2 ? 0x1f : n == 3 ? 0x0f : 0x07);
                for (size_t k = 1; k < n; k++)
                    cp = (cp << 6) | (s[i + k] & 0x3f);
            }
            if (cp >= 0x10000) { /* a surrogate pair, as json.dumps writes it */
                unsigned v = cp - 0x10000;
                unsigned hi = 0xd800 | (v >> 10), lo = 0xdc00 | (v & 0x3ff);
                char pair[12] = {'\\', 'u', hex[hi >> 12], hex[(hi >> 8) & 15], hex[(hi >> 4) & 15],
                                 hex[hi & 15], '\\', 'u', hex[lo >> 12], hex[(lo >> 8) & 15],
                                 hex[(lo >> 4) & 15], hex[lo & 15]};
                put(b, pair, 12);
            } else {
                snprintf(esc, sizeof esc, "\\u%04x", cp);
                put(b, esc, 6);
            }
            i += n;
        }
    }
    put(b, "\"", 1);
}

/* ---- the server's answers ---------------------------------------------------------------- */

/* What an answer holds: the members the client reads (the server writes them flat). */
struct reply {
    int has_pid, has_exit, has_error, has_code;
    long pid, exit, code;
    char error[8192];
};

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static const char *read_u4(const char *p, const char *end, unsigned *out) {
    if (end - p < 4)
        return NULL;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return NULL;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return p + 4;
}

static void put_utf8(char *out, size_t *n, size_t cap, unsigned cp) {
    char tmp[4];
    size_t k;
    if (cp >= 0xdc80 && cp <= 0xdcff) { /* a surrogate-escaped byte: the byte itself */
        tmp[0] = (char)(cp & 0xff);
        k = 1;
    } else if (cp < 0x80) {
        tmp[0] = (char)cp;
        k = 1;
    } else if (cp < 0x800) {
        tmp[0] = (char)(0xc0 | cp >> 6);
        tmp[1] = (char)(0x80 | (cp & 0x3f));
        k = 2;
    } else if (cp < 0x10000) {
        tmp[0] = (char)(0xe0 | cp >> 12);
        tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        tmp[2] = (char)(0x80 | (cp & 0x3f));
        k = 3;
    } else {
        tmp[0] = (char)(0xf0 | cp >> 18);
        tmp[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        tmp[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        tmp[3] = (char)(0x80 | (cp & 0x3f));
        k = 4;
    }
    if (*n + k < cap) {
        memcpy(out + *n, tmp, k);
        *n += k;
    }
}

/* A JSON string at p (after its opening quote), decoded into out (NUL-terminated, cut to
 * cap); the position after its closing quote, or NULL. */
static const char *read_string(const char *p, const char *end, char *out, size_t cap) {
    size_t n = 0;
    while (p < end && *p != '"') {
        if (*p != '\\') {
            if (n + 1 < cap)
                out[n++] = *p;
            p++;
            continue;
        }
        if (++p >= end)
            return NULL;
        char c = *p++;
        unsigned cp;
        switch (c) {
        case 'n': cp = '\n'; break;
        case 't': cp = '\t'; break;
        case 'r': cp = '\r'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'u':
            if ((p = read_u4(p, end, &cp)) == NULL)
                return NULL;
            if (cp >= 0xd800 && cp < 0xdc00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                unsigned lo;
                const char *q = read_u4(p + 2, end, &lo);
                if (q != NULL && lo >= 0xdc00 && lo < 0xe000) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    p = q;
                }
            }
            break;
        default: cp = (unsigned char)c; break; /* \" \\ \/ */
        }
        put_utf8(out, &n, cap, cp);
    }
    if (out != NULL && cap > 0)
        out[n < cap ? n : cap - 1] = '\0';
    return p < end ? p + 1 : NULL;
}

/* Past one JSON value of any kind (the members this client does not read). */
static const char *skip_value(const char *p, const char *end) {
    int depth = 0;
    while (p < end) {
        char c = *p;
        if (c == '"') {
            p++;
            while (p < end && *p != '"')
                p += *p == '\\' ? 2 : 1;
            p++;
        } else if (c == '{' || c == '[') {
            depth++;
            p++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return p;
            depth--;
            p++;
        } else if (c == ',' && depth == 0) {
            return p;
        } else {
            p++;
        }
        if (depth == 0 && (c == '"' || c == '}' || c == ']'))
            return p;
    }
    return p;
}

static int parse_reply(const char *msg, size_t len, struct reply *r) {
    const char *p = msg, *end = msg + len;
    memset(r, 0, sizeof *r);
    p = skip_ws(p, end);
    if (p >= end || *p++ != '{')
        return -1;
    for (;;) {
        p = skip_ws(p, end);
        if (p < end && *p == '}')
            return 0;
        if (p >= end || *p++ != '"')
            return -1;
        char key[32];
        if ((p = read_string(p, end, key, sizeof key)) == NULL)
            return -1;
        p = skip_ws(p, end);
        if (p >= end || *p++ != ':')
            return -1;
        p = skip_ws(p, end);
        if (p >= end)
            return -1;
        if (strcmp(key, "error") == 0 && *p == '"') {
            if ((p = read_string(p + 1, end, r->error, sizeof r->error)) == NULL)
                return -1;
            r->has_error = 1;
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            char num[32];
            size_t n = 0;
            while (p < end && n + 1 < sizeof num && (*p == '-' || (*p >= '0' && *p <= '9')))
                num[n++] = *p++;
            num[n] = '\0';
            long v = strtol(num, NULL, 10);
            if (strcmp(key, "pid") == 0)
                r->pid = v, r->has_pid = 1;
            else if (strcmp(key, "exit") == 0)
                r->exit = v, r->has_exit = 1;
            else if (strcmp(key, "code") == 0)
                r->code = v, r->has_code = 1;
        } else {
            p = skip_value(p, end);
        }
        p = skip_ws(p, end);
        if (p < end && *p == ',')
            p++;
    }
}

/* ---- the connection ---------------------------------------------------------------------- */

static int sock = -1;
static char *msgbuf;

static void send_message(const struct buf *b, const int *fds, int nfds) {
    struct iovec iov = {b->p, b->len};
    union {
        char buf[CMSG_SPACE(3 * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        memset(&control, 0, sizeof control);
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
    }
    while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EMSGSIZE)
            fail(1, "the arguments and environment are too large to send to the server");
        fail(1, "the instance's server closed the connection: %s", strerror(errno));
    }
}

/* The server's next answer; an error answer ends this command as the Python client does. */
static void receive(struct reply *r) {
    ssize_t n;
    for (;;) {
        n = recv(sock, msgbuf, MAX_MESSAGE, 0);
        if (n >= 0 || errno != EINTR)
            break;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        fail(1, "the instance's server does not answer");
    if (n < 0)
        fail(1, "the instance's server closed the connection: %s", strerror(errno));
    if (n == 0)
        fail(1, "the instance's server closed the connection");
    if (parse_reply(msgbuf, (size_t)n, r) != 0)
        fail(1, "the instance's server gave a malformed answer");
    if (r->has_error)
        fail(r->has_code ? (int)r->code : 1, "%s", r->error);
}

/* os.path.join(a, b) */
static char *join(const char *a, const char *b) {
    size_t la = strlen(a);
    char *out = malloc(la + strlen(b) + 2);
    if (out == NULL)
        fail(1, "out of memory");
    sprintf(out, la == 0 || a[la - 1] == '/' ? "%s%s" : "%s/%s", a, b);
    return out;
}

/* os.path.abspath: the current directory joined in front, then normalized (no symlinks). */
static char *abspath(const char *path) {
    char *full;
    if (path[0] == '/') {
        full = strdup(path);
    } else {
        char *cwd = getcwd(NULL, 0);
        full = join(cwd != NULL ? cwd : "", path);
        free(cwd);
    }
    if (full == NULL)
        fail(1, "out of memory");
    /* "//x" keeps its two slashes, as POSIX lets it (and Python's normpath does) */
    size_t lead = full[0] == '/' ? (full[1] == '/' && full[2] != '/' ? 2 : 1) : 0;
    char *out = malloc(strlen(full) + 2);
    char **parts = malloc((strlen(full) / 2 + 2) * sizeof *parts);
    if (out == NULL || parts == NULL)
        fail(1, "out of memory");
    size_t np = 0;
    for (char *save = NULL, *tok = strtok_r(full, "/", &save); tok != NULL;
         tok = strtok_r(NULL, "/", &save)) {
        if (strcmp(tok, ".") == 0)
            continue;
        if (strcmp(tok, "..") == 0) {
            if (np > 0)
                np--;
            continue;
        }
        parts[np++] = tok;
    }
    size_t n = 0;
    for (size_t i = 0; i < lead; i++)
        out[n++] = '/';
    for (size_t i = 0; i < np; i++) {
        if (i > 0)
            out[n++] = '/';
        size_t l = strlen(parts[i]);
        memcpy(out + n, parts[i], l);
        n += l;
    }
    if (n == 0)
        out[n++] = '.';
    out[n] = '\0';
    return out;
}

static void connect_server(const char *instance_dir) {
    struct stat st;
    char *config = join(instance_dir, "Occlum.json");
    if (stat(config, &st) != 0 || !S_ISREG(st.st_mode))
        fail(1,
             "not an Occlum instance directory: %s (no Occlum.json; create one with "
             "`occlum new DIR` or `occlum init`)",
             abspath(instance_dir));
    char *run_dir = join(instance_dir, "run");
    char *sock_path = join(run_dir, "occlum.sock");
    if (stat(sock_path, &st) != 0)
        fail(1, "the instance is not started (occlum start starts it)");
    sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (sock < 0)
        fail(1, "cannot make a socket: %s", strerror(errno));
    /* through a descriptor of run/, so that any instance path fits sun_path (wire.py) */
    int dirfd = open(run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        fail(1, "cannot reach %s: %s", run_dir, strerror(errno));
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/occlum.sock", dirfd);
    int rc;
    while ((rc = connect(sock, (struct sockaddr *)&addr, sizeof addr)) < 0 && errno == EINTR)
        ;
    int err = errno;
    close(dirfd);
    if (rc < 0 && err == ECONNREFUSED)
        fail(1,
             "the instance's server is gone: %s was left by a server that ended (see %s); "
             "occlum start starts it again",
             sock_path, join(run_dir, "server.log"));
    if (rc < 0)
        fail(1, "cannot reach the instance's server at %s: %s", sock_path, strerror(err));
}

static void send_exec(char **argv, int argc, int tty, const int *fds) {
    struct buf b = {0};
    puts_(&b, "{\"op\": \"exec\", \"argv\": [");
    for (int i = 0; i < argc; i++) {
        if (i > 0)
            puts_(&b, ", ");
        put_json_string(&b, argv[i], strlen(argv[i]));
    }
    puts_(&b, "], \"env\": {");
    /* os.environ: entries with an '=', the first of a name wins; written last to first, so
     * that json.loads (the last of a name wins) keeps the first */
    size_t count = 0;
    while (environ[count] != NULL)
        count++;
    int first = 1;
    for (size_t i = count; i-- > 0;) {
        const char *e = environ[i], *eq = strchr(e, '=');
        if (eq == NULL || eq == e)
            continue;
        if (!first)
            puts_(&b, ", ");
        first = 0;
        put_json_string(&b, e, (size_t)(eq - e));
        puts_(&b, ": ");
        put_json_string(&b, eq + 1, strlen(eq + 1));
    }
    puts_(&b, tty ? "}, \"tty\": true}" : "}, \"tty\": false}");
    send_message(&b, fds, 3);
    free(b.p);
}

static long started(void) {
    struct timeval tv = {REPLY_TIMEOUT, 0};
    struct reply r;
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    receive(&r);
    tv.tv_sec = 0;
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return r.pid;
}

static long ended(void) {
    struct reply r;
    for (;;) {
        receive(&r);
        if (r.has_exit)
            return r.exit;
    }
}

/* ---- how the program ended --------------------------------------------------------------- */

static const char *const SIGNAMES[32] = {
    NULL, "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
    "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT",
    "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU",
    "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
};

/* The exit code for a wait status; a fatal signal a user does not expect is named. */
static int exit_code(long status, const char *program, long pid) {
    int st = (int)status;
    if (!WIFSIGNALED(st))
        return WEXITSTATUS(st);
    int sig = WTERMSIG(st);
    if (sig != SIGINT && sig != SIGTERM && sig != SIGPIPE && sig != SIGKILL && sig != SIGHUP) {
        char name[32], line[4200];
        if (sig > 0 && sig < 32 && SIGNAMES[sig] != NULL)
            snprintf(name, sizeof name, "%s", SIGNAMES[sig]);
        else if (sig == SIGRTMIN)
            snprintf(name, sizeof name, "SIGRTMIN");
        else if (sig == SIGRTMAX)
            snprintf(name, sizeof name, "SIGRTMAX");
        else
            snprintf(name, sizeof name, "SIGRTMIN+%d", sig - SIGRTMIN);
        int n = snprintf(line, sizeof line, "occlum: %.4000s (pid %ld) killed by %s\n", program,
                         pid, name);
        write_all(2, line, (size_t)(n < (int)sizeof line ? n : (int)sizeof line - 1));
    }
    return 128 + sig;
}

/* ---- without a terminal: signals are relayed --------------------------------------------- */

static void relay(int sig) {
    /* {"op": "signal", "sig": N}, built without stdio: this runs in a signal handler */
    static const char head[] = "{\"op\": \"signal\", \"sig\": ";
    char msg[sizeof head + 16];
    size_t n = sizeof head - 1;
    memcpy(msg, head, n);
    char digits[12];
    int k = 0;
    do {
        digits[k++] = (char)('0' + sig % 10);
        sig /= 10;
    } while (sig > 0);
    while (k > 0)
        msg[n++] = digits[--k];
    msg[n++] = '}';
    int saved = errno;
    send(sock, msg, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    errno = saved;
}

static int exec_plain(char **argv, int argc) {
    static const int fds[3] = {0, 1, 2};
    send_exec(argv, argc, 0, fds);
    long pid = started();
    struct sigaction sa = {.sa_handler = relay}; /* no SA_RESTART: recv is retried by hand */
    sigemptyset(&sa.sa_mask);
    int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++)
        sigaction(forwarded[i], &sa, NULL);
    return exit_code(ended(), argv[0], pid);
}

/* ---- under a terminal: raw mode and a copy both ways ------------------------------------- */

static int wake_w = -1;
static volatile sig_atomic_t fatal_signal;

static void on_winch(int sig) {
    (void)sig;
    int saved = errno;
    (void)!write(wake_w, "W", 1);
    errno = saved;
}

static void on_fatal(int sig) {
    fatal_signal = sig;
    on_winch(sig);
}

static void copy_winsize(int master) {
    struct winsize ws;
    if (ioctl(0, TIOCGWINSZ, &ws) == 0)
        ioctl(master, TIOCSWINSZ, &ws);
}

static int exec_tty(char **argv, int argc) {
    int master, slave;
    if (openpty(&master, &slave, NULL, NULL, NULL) != 0)
        fail(1, "cannot open a pseudo-terminal: %s", strerror(errno));
    fcntl(master, F_SETFD, FD_CLOEXEC);
    struct termios saved;
    int have_saved = tcgetattr(0, &saved) == 0;
    if (have_saved)
        tcsetattr(slave, TCSANOW, &saved);
    copy_winsize(master);
    int fds[3] = {slave, slave, slave};
    send_exec(argv, argc, 1, fds);
    close(slave);
    long pid = started();
    int pipefd[2];
    if (pipe2(pipefd, O_NONBLOCK | O_CLOEXEC) != 0)
        fail(1, "cannot make a pipe: %s", strerror(errno));
    wake_w = pipefd[1];
    struct sigaction sa = {.sa_handler = on_winch, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGWINCH, &sa, NULL);
    /* the terminal is given back before this command ends of SIGTERM, SIGHUP and the like */
    sa.sa_handler = on_fatal;
    int fatal[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof fatal / sizeof *fatal; i++)
        sigaction(fatal[i], &sa, NULL);
    if (have_saved) { /* Python's tty.setraw */
        struct termios raw = saved;
        raw.c_iflag &= ~(tcflag_t)(BRKINT | ICRNL | INPCK | ISTRIP | IXON);
        raw.c_oflag &= ~(tcflag_t)OPOST;
        raw.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
        raw.c_cflag |= CS8;
        raw.c_lflag &= ~(tcflag_t)(ECHO | ICANON | IEXTEN | ISIG);
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        tcsetattr(0, TCSAFLUSH, &raw);
        restore_tc = &saved;
    }
    struct pollfd pfd[4] = {
        {.fd = 0, .events = POLLIN},
        {.fd = master, .events = POLLIN},
        {.fd = sock, .events = POLLIN},
        {.fd = pipefd[0], .events = POLLIN},
    };
    long status = -1;
    char data[65536];
    for (;;) {
        if (fatal_signal)
            break;
        int n = poll(pfd, 4, status >= 0 ? 50 : -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        int master_ready = pfd[1].fd >= 0 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR));
        if (status >= 0 && !master_ready)
            break; /* the program ended and its last output is out */
        if (pfd[3].revents & POLLIN) {
            while (read(pipefd[0], data, sizeof data) > 0)
                ;
            copy_winsize(master);
        }
        if (pfd[0].fd >= 0 && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = read(0, data, 4096);
            if (r > 0)
                write_all(master, data, (size_t)r);
            else if (r == 0 || errno != EINTR)
                pfd[0].fd = -1;
        }
        if (master_ready) {
            ssize_t r = read(master, data, sizeof data);
            if (r < 0 && errno == EINTR)
                continue;
            if (r > 0) {
                write_all(1, data, (size_t)r);
            } else { /* EIO: every descriptor of the terminal's other side is closed */
                pfd[1].fd = -1;
                if (status >= 0)
                    break;
            }
        }
        if (pfd[2].fd >= 0 && (pfd[2].revents & (POLLIN | POLLHUP | POLLERR)) && status < 0) {
            struct reply r;
            receive(&r); /* an error answer ends this command: fail() restores the terminal */
            if (r.has_exit) {
                status = r.exit;
                pfd[2].fd = -1;
                if (pfd[1].fd < 0)
                    break;
            }
        }
    }
    if (restore_tc != NULL)
        tcsetattr(0, TCSADRAIN, restore_tc);
    restore_tc = NULL;
    if (fatal_signal) {
        signal(fatal_signal, SIG_DFL);
        raise(fatal_signal);
        _exit(128 + fatal_signal);
    }
    return exit_code(status, argv[0], pid);
}

/* ---- the command line -------------------------------------------------------------------- */

static void __attribute__((noreturn)) usage(int code, const char *why) {
    if (why != NULL) {
        write_all(2, USAGE, sizeof USAGE - 1);
        char line[512];
        int n = snprintf(line, sizeof line, "occlum-exec: error: %.400s\n", why);
        write_all(2, line, (size_t)n);
    } else {
        write_all(1, USAGE, sizeof USAGE - 1);
    }
    _exit(code);
}

int main(int argc, char **argv) {
    const char *instance_dir = ".";
    int use_tty = -1;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--instance-dir") == 0) {
            if (i + 1 >= argc)
                usage(2, "--instance-dir needs a directory");
            instance_dir = argv[++i];
        } else if (strncmp(a, "--instance-dir=", 15) == 0) {
            instance_dir = a + 15;
        } else if (strcmp(a, "--tty") == 0) {
            use_tty = 1;
        } else if (strcmp(a, "--no-tty") == 0) {
            use_tty = 0;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(0, NULL);
        } else if (strcmp(a, "--") == 0) {
            i++;
            break;
        } else if (a[0] == '-') {
            char why[300];
            snprintf(why, sizeof why, "no such option: %.200s", a);
            usage(2, why);
        } else {
            break;
        }
    }
    if (i >= argc)
        usage(2, "no PROGRAM given");
    msgbuf = malloc(MAX_MESSAGE);
    if (msgbuf == NULL)
        fail(1, "out of memory");
    connect_server(instance_dir);
    if (use_tty < 0)
        use_tty = isatty(0) && isatty(1);
    return use_tty ? exec_tty(argv + i, argc - i) : exec_plain(argv + i, argc - i);
}
