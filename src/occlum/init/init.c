/*
 * The default init of an Occlum instance: the first program of the boot, run from the initfs.
 *
 * It finds the key of the root image, if there is one, and asks the LibOS to mount the root
 * file system with Occlum's mount_rootfs call (number 363); the LibOS then starts the
 * application.  The key comes from, in this order:
 *
 *   /etc/image_key   put into the initfs by `occlum build --buildin-image-key`
 *   /dev/image_key   the file given to `occlum run --image-key FILE` (present only while
 *                    init runs, and only when such a file was given)
 *
 * With neither, the root is mounted without a key (an integrity-only image).  The writable
 * layer's key is sealed by the LibOS itself (autokey_policy in Occlum.json).
 *
 * A custom init replaces initfs/bin/init and makes the same call, with a key it obtained its
 * own way (from a key server, say): syscall(363, key, key_len) with key_len 16 or 32, or
 * (NULL, 0).  It must exit with status 0 once the root is mounted.
 *
 * Built static, so that the initfs needs no libraries.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SYS_MOUNT_ROOTFS 363
#define MAX_KEY 32

/* 0: a key was read into key/len; 1: no such file; -1: a file that is not a key (reported). */
static int read_key(const char *path, unsigned char *key, size_t *len)
{
    char text[256];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        fprintf(stderr, "init: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n < 0) {
        fprintf(stderr, "init: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    text[n] = '\0';
    /* Occlum's format: hex pairs, dashes optional ("c7-32-b3-...-9e"), then a newline */
    size_t got = 0;
    int high = -1;
    for (const char *p = text; *p; p++) {
        int v;
        if (*p >= '0' && *p <= '9')
            v = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            v = *p - 'a' + 10;
        else if (*p >= 'A' && *p <= 'F')
            v = *p - 'A' + 10;
        else if ((*p == '-' || *p == '\n' || *p == ' ') && high < 0)
            continue;
        else
            goto bad;
        if (high < 0) {
            high = v;
            continue;
        }
        if (got == MAX_KEY)
            goto bad;
        key[got++] = (unsigned char)(high << 4 | v);
        high = -1;
    }
    if (high >= 0 || (got != 16 && got != 32))
        goto bad;
    *len = got;
    return 0;
bad:
    fprintf(stderr, "init: %s is not an image key (16 or 32 bytes as hex pairs)\n", path);
    return -1;
}

int main(void)
{
    static const char *const sources[] = {"/etc/image_key", "/dev/image_key"};
    unsigned char key[MAX_KEY];
    size_t len = 0;
    for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++) {
        int r = read_key(sources[i], key, &len);
        if (r < 0)
            return 1;
        if (r == 0)
            break;
    }
    /* on failure the LibOS has already said why, in one line */
    if (syscall(SYS_MOUNT_ROOTFS, len ? key : NULL, len) != 0)
        return 1;
    memset(key, 0, sizeof(key));
    return 0;
}
