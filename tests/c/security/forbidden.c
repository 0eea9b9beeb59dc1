/* System calls the LibOS forbids outright: bpf, perf_event_open, keyctl, modules, kexec,
 * open_by_handle_at, userfaultfd, iopl/ioperm, syslog. Each is given valid arguments, so that
 * on a bare host (as root) it would succeed: any error here is the LibOS's refusal, but strict
 * probes accept only EPERM/EACCES/ENOSYS (another errno means the host kernel saw it). */
#include "sec.h"
#include <linux/perf_event.h>
#include <stdint.h>

static long bpf_map(void)
{
    union {
        struct { uint32_t map_type, key_size, value_size, max_entries, map_flags; } m;
        char pad[128];
    } attr;
    memset(&attr, 0, sizeof attr);
    attr.m.map_type = 2; /* BPF_MAP_TYPE_ARRAY */
    attr.m.key_size = 4;
    attr.m.value_size = 4;
    attr.m.max_entries = 1;
    return syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, &attr, sizeof attr);
}
static long perf(void)
{
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.type = PERF_TYPE_SOFTWARE;
    a.size = sizeof a;
    a.config = PERF_COUNT_SW_CPU_CLOCK;
    a.disabled = 1;
    return syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
}
static long add_key(void)
{
    return syscall(SYS_add_key, "user", "occlum-sec-test", "x", 1, -2 /* KEY_SPEC_PROCESS_KEYRING */);
}
static long keyctl_get(void) { return syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* SESSION */, 1); }
static long request_key(void) { return syscall(SYS_request_key, "user", "occlum-none", NULL, 0); }
static long init_module(void) { static char img[64]; return syscall(SYS_init_module, img, sizeof img, ""); }
static long finit_module(void) { return syscall(SYS_finit_module, 0, "", 0); }
static long delete_module(void) { return syscall(SYS_delete_module, "occlum_no_such_module", 0x800); }
static long kexec(void) { return syscall(SYS_kexec_file_load, -1, -1, 0, "", 0x2 /* UNLOAD */); }
static long uffd(void) { return syscall(SYS_userfaultfd, 0); }
static long iopl(void) { return syscall(SYS_iopl, 3); }
static long ioperm(void) { return syscall(SYS_ioperm, 0x80, 1, 1); }
static long klog(void) { return syscall(SYS_syslog, 10 /* SIZE_BUFFER */, NULL, 0); }
static long handle(void)
{
    struct { unsigned int bytes; int type; unsigned char h[128]; } fh;
    memset(&fh, 0, sizeof fh);
    fh.bytes = 8;
    fh.type = 1; /* FILEID_INO32_GEN: inode 2 (a root directory) */
    fh.h[0] = 2;
    int root = open("/", O_RDONLY | O_DIRECTORY);
    return syscall(SYS_open_by_handle_at, root, &fh, O_RDONLY);
}
static long name_handle(void)
{
    struct { unsigned int bytes; int type; unsigned char h[128]; } fh;
    int mnt;
    fh.bytes = 128;
    return syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &fh, &mnt, 0);
}
/* calls whose host objects are not the LibOS's: a watch on a path, a Landlock rule on one */
static long inotify_watch(void)
{
    int fd = (int)syscall(SYS_inotify_init1, 0);
    if (fd < 0)
        return -1;
    return syscall(SYS_inotify_add_watch, fd, "/", 0xfff);
}
static long landlock_version(void) { return syscall(444 /* landlock_create_ruleset */, NULL, 0, 1); }
static long aio_setup(void) { unsigned long ctx = 0; return syscall(SYS_io_setup, 1, &ctx); }
static long ldt_read(void) { static char ldt[16]; return syscall(SYS_modify_ldt, 0, ldt, sizeof ldt); }
static long unknown1000(void) { return syscall(1000); }
static long unknown_big(void) { return syscall(0x3fffffff); }
static long unknown_neg(void) { return syscall(-1L); }

int main(int argc, char **argv)
{
    sec_init(argc, argv);
    PROBE("bpf(MAP_CREATE)", bpf_map);
    PROBE("perf_event_open", perf);
    PROBE("add_key", add_key);
    PROBE("keyctl(GET_KEYRING_ID)", keyctl_get);
    PROBE_STRICT("request_key", request_key);
    PROBE_STRICT("init_module", init_module);
    PROBE_STRICT("finit_module", finit_module);
    PROBE_STRICT("delete_module", delete_module);
    PROBE_STRICT("kexec_file_load", kexec);
    PROBE("userfaultfd", uffd);
    PROBE("iopl(3)", iopl);
    PROBE("ioperm", ioperm);
    PROBE("syslog(SIZE_BUFFER)", klog);
    PROBE_STRICT("open_by_handle_at", handle);
    PROBE("name_to_handle_at(/)", name_handle);
    PROBE_STRICT("inotify_add_watch(/)", inotify_watch);
    PROBE_STRICT("landlock_create_ruleset(VERSION)", landlock_version);
    PROBE_STRICT("io_setup", aio_setup);
    PROBE_STRICT("modify_ldt(read)", ldt_read);
    PROBE_STRICT("syscall 1000", unknown1000);
    PROBE_STRICT("syscall 0x3fffffff", unknown_big);
    PROBE_STRICT("syscall -1", unknown_neg);
    return sec_finish();
}
