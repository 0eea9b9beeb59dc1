/* Users and groups: root switches to another user and back (through the saved id), a user
 * cannot take ids that are not its own, capabilities leave with uid 0 (PR_SET_KEEPCAPS keeps
 * the permitted ones), credentials belong to a thread, execve recomputes them, and every file
 * permission and signal check sees the user the caller is now. */
#include "common.h"
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <sys/auxv.h>
#include <grp.h>
#include <sys/fsuid.h>
#include <sys/time.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#define USER 1000
#define GROUP 1000
#define OTHER 2000

static void ids(const char *label)
{
    uid_t r, e, s;
    gid_t gr, ge, gs;
    getresuid(&r, &e, &s);
    getresgid(&gr, &ge, &gs);
    printf("%s: uid %u %u %u gid %u %u %u\n", label, r, e, s, gr, ge, gs);
}

/* whether a capability is in the caller's effective and permitted sets */
static void caps(const char *label, int cap)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0) {
        printf("%s: capget %s\n", label, errname(errno));
        t_failures++;
        return;
    }
    printf("%s: cap %d effective %d permitted %d\n", label, cap, (d[0].effective >> cap) & 1,
           (d[0].permitted >> cap) & 1);
}

static void status_ids(const char *label)
{
    const char *s = read_file("/proc/self/status");
    const char *u = s ? strstr(s, "\nUid:") : NULL;
    const char *g = s ? strstr(s, "\nGid:") : NULL;
    if (!u || !g) {
        printf("%s: no Uid/Gid lines\n", label);
        t_failures++;
        return;
    }
    printf("%s: %.*s %.*s\n", label, (int)strcspn(u + 1, "\n"), u + 1,
           (int)strcspn(g + 1, "\n"), g + 1);
}

static void owner(const char *label, const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        printf("%s: stat %s\n", label, errname(errno));
        t_failures++;
        return;
    }
    printf("%s: uid %u gid %u mode %o\n", label, st.st_uid, st.st_gid, st.st_mode & 07777);
}

static void *thread_switch(void *arg)
{
    (void)arg;
    /* the raw call changes this thread only (glibc's setresuid would change every thread) */
    long r = syscall(SYS_setresuid, OTHER, OTHER, OTHER);
    printf("thread: setresuid %s, getuid %ld\n", r == 0 ? "ok" : errname(errno),
           syscall(SYS_getuid));
    return NULL;
}

/* run by execve from a child that became USER */
static int after_exec(void)
{
    ids("after exec");
    printf("after exec: AT_UID %lu AT_EUID %lu AT_GID %lu AT_EGID %lu AT_SECURE %lu\n",
           getauxval(AT_UID), getauxval(AT_EUID), getauxval(AT_GID), getauxval(AT_EGID),
           getauxval(AT_SECURE));
    caps("after exec", CAP_SETUID);
    return t_failures ? 1 : 0;
}

static void as_user(void)
{
    gid_t groups[] = {GROUP, 3000};
    OK("setgroups", setgroups(2, groups));
    OK("setresgid", setresgid(GROUP, GROUP, GROUP));
    /* keep the saved uid 0: the way back */
    OK("setresuid user, saved 0", setresuid(USER, USER, 0));
    ids("user with saved root");
    caps("user with saved root", CAP_SETUID);
    status_ids("status");
    gid_t got[8];
    int n = getgroups(8, got);
    printf("getgroups: %d %u %u\n", n, n > 0 ? got[0] : 0, n > 1 ? got[1] : 0);

    /* file permissions as the user */
    ERR("open root's 0600 file", open("secret", O_RDONLY), EACCES);
    OK("open the user's group-readable file", close(open("shared", O_RDONLY)));
    ERR("create in root's 0755 directory", open("rootdir/x", O_CREAT | O_WRONLY, 0644), EACCES);
    ERR("symlink in root's 0755 directory", symlink("secret", "rootdir/l"), EACCES);
    ERR("mkdir in root's 0755 directory", mkdir("rootdir/d", 0755), EACCES);
    ERR("search a 0700 directory", open("private/f", O_RDONLY), EACCES);
    ERR("chmod root's file", chmod("secret", 0644), EPERM);
    ERR("chown root's file", chown("public", USER, -1), EPERM);
    ERR("utimes explicit on root's writable file", utimes("public", (struct timeval[2]){{1, 0}, {2, 0}}), EPERM);
    OK("utimes now on root's writable file", utimes("public", NULL));
    ERR("unlink root's file in a sticky directory", unlink("sticky/rootfile"), EPERM);
    ERR("rename root's file in a sticky directory", rename("sticky/rootfile", "sticky/x"), EPERM);
    ERR("access() of the 0600 file (real uid)", access("secret", R_OK), EACCES);

    /* the user's own files */
    OK("create in the world-writable directory", close(open("tmp/mine", O_CREAT | O_WRONLY, 0640)));
    owner("the user's new file", "tmp/mine");
    OK("mkdir in the set-group-id directory", mkdir("sgid/d", 0755));
    owner("new directory in the set-group-id directory", "sgid/d");
    ERR("give the file to root", chown("tmp/mine", 0, -1), EPERM);
    ERR("give the file to a group not the user's", chown("tmp/mine", -1, 4000), EPERM);
    OK("give the file to a supplementary group", chown("tmp/mine", -1, 3000));
    OK("chown to its own uid", chown("tmp/mine", USER, -1));
    owner("after chgrp", "tmp/mine");
    OK("chmod the user's file with S_ISGID, group 3000", chmod("tmp/mine", 02750));
    owner("S_ISGID kept (in group 3000)", "tmp/mine");
    OK("sticky: own file", close(open("sticky/mine", O_CREAT | O_WRONLY, 0644)));
    OK("sticky: unlink own file", unlink("sticky/mine"));

    /* signals */
    ERR("signal a root process", kill(getppid(), 0), EPERM);
    OK("signal itself", kill(getpid(), 0));

    /* switching */
    ERR("setuid to another user", setuid(OTHER), EPERM);
    ERR("setgid to another group", setgid(4000), EPERM);
    ERR("setgroups as a user", setgroups(0, NULL), EPERM);
    OK("seteuid back to the saved 0", seteuid(0));
    ids("effective root again");
    caps("effective root again", CAP_SETUID);
    OK("open root's file as effective root", close(open("secret", O_RDONLY)));
    ERR("access() still asks as the real user", access("secret", R_OK), EACCES);
    OK("faccessat(AT_EACCESS) asks as effective root", faccessat(AT_FDCWD, "secret", R_OK, AT_EACCESS));
    printf("setfsuid(OTHER) returns the old fsuid: %d\n", setfsuid(OTHER));
    printf("setfsuid(-1) returns the current fsuid: %d\n", setfsuid(-1));
    ERR("fsuid OTHER: open root's file", open("secret", O_RDONLY), EACCES);
    printf("setfsuid(0): %d\n", setfsuid(0));
    OK("fsuid 0 again: open root's file", close(open("secret", O_RDONLY)));
    OK("setuid(USER) drops root everywhere", setuid(USER));
    ids("user for good");
    caps("user for good", CAP_SETUID);
    ERR("seteuid 0 no more", seteuid(0), EPERM);
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[2], "after-exec") == 0)
        return after_exec();
    scratch_enter(argc, argv);
    ids("root");
    caps("root", CAP_SETUID);
    caps("root", CAP_DAC_OVERRIDE);
    CHECK(write_file("secret", "s") == 0 && chmod("secret", 0600) == 0);
    CHECK(write_file("shared", "s") == 0 && chmod("shared", 0640) == 0 &&
          chown("shared", 0, GROUP) == 0);
    CHECK(write_file("public", "p") == 0 && chmod("public", 0666) == 0);
    CHECK(mkdir("rootdir", 0755) == 0 && mkdir("private", 0700) == 0);
    CHECK(write_file("private/f", "f") == 0);
    CHECK(mkdir("tmp", 0777) == 0 && chmod("tmp", 0777) == 0);
    CHECK(mkdir("sticky", 0777) == 0 && chmod("sticky", 01777) == 0);
    CHECK(write_file("sticky/rootfile", "r") == 0 && chmod("sticky/rootfile", 0666) == 0);
    CHECK(mkdir("sgid", 0777) == 0 && chown("sgid", 0, 5000) == 0 && chmod("sgid", 02777) == 0);
    int self = open(self_exe(), O_RDONLY | O_CLOEXEC);
    CHECK(self >= 0);

    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        as_user();
        fflush(stdout);
        _exit(t_failures ? 1 : 0);
    }
    CHECK(wait_child(pid) == 0);
    ids("the parent is still root");

    /* capabilities across a switch: PR_SET_KEEPCAPS keeps the permitted set */
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        OK("PR_SET_KEEPCAPS", prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
        printf("PR_GET_KEEPCAPS: %d\n", prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0));
        OK("setresuid all to the user", setresuid(USER, USER, USER));
        caps("kept", CAP_SETUID);
        ERR("setuid back without effective CAP_SETUID", setuid(0), EPERM);
        fflush(stdout);
        _exit(t_failures ? 1 : 0);
    }
    CHECK(wait_child(pid) == 0);

    /* per-thread credentials */
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        pthread_t th;
        pthread_create(&th, NULL, thread_switch, NULL);
        pthread_join(th, NULL);
        printf("main thread: getuid %ld\n", syscall(SYS_getuid));
        fflush(stdout);
        _exit(0);
    }
    CHECK(wait_child(pid) == 0);

    /* execve as a user: the saved ids follow the effective ones, no capability is left */
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        CHECK(setresgid(GROUP, GROUP, GROUP) == 0);
        CHECK(setresuid(USER, USER, 0) == 0);
        char *args[] = {"credentials", "", "after-exec", NULL};
        fflush(stdout);
        syscall(SYS_execveat, self, "", args, environ, AT_EMPTY_PATH);
        printf("execveat: %s\n", errname(errno));
        _exit(1);
    }
    CHECK(wait_child(pid) == 0);

    /* a user may signal its own processes, not root's */
    fflush(stdout);
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid = fork();
    if (pid == 0) {
        CHECK(setuid(USER) == 0);
        CHECK(write(ready[1], "r", 1) == 1);
        pause();
        _exit(0);
    }
    char c;
    CHECK(read(ready[0], &c, 1) == 1);
    pid_t other = fork();
    if (other == 0) {
        CHECK(setuid(OTHER) == 0);
        int r = kill(pid, SIGTERM);
        printf("user OTHER signals user USER: %s\n", r == 0 ? "ok" : errname(errno));
        fflush(stdout);
        _exit(0);
    }
    CHECK(wait_child(other) == 0);
    OK("root signals the user", kill(pid, SIGTERM));
    printf("user's process: %d\n", wait_child(pid));
    if (t_failures == 0)
        printf("PASS\n");
    return t_failures ? 1 : 0;
}
