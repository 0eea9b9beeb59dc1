/*
 * The attested-boot init (Occlum's init_ra), put in the initfs by `occlum build --init-ra`.
 *
 * It reads the key broker's address and the secret's name from /etc/init_ra.conf (written
 * into the initfs image by the build, so both are covered by MRENCLAVE), attests to the broker
 * (`occlum kbs serve`, API in docs/attestation.md) and receives the image key, then asks the
 * LibOS to mount the encrypted root with it (mount_rootfs, number 363), as the default init
 * does with a key file.  The broker releases the key only against a fresh quote of this
 * enclave whose measurement matches the secret's policy: the image runs only where the broker
 * agrees, and the key is never on the host's disk outside the broker's store.
 *
 * The exchange: POST /v1/challenge gives a nonce; an ephemeral X25519 key; a quote from
 * /dev/sgx (SGXIOC_GEN_DCAP_QUOTE) whose report data is SHA-256(nonce || pubkey) || 32 zeros;
 * POST /v1/secret/NAME answers an envelope opened with X25519 + HKDF-SHA256 (salt = nonce,
 * info = "occlum-kbs v1 secret " || NAME) + AES-256-GCM (aad = NAME).  The secret is the key
 * file of `occlum gen-image-key` (hex pairs).
 *
 * /etc/init_ra.conf: the broker's URL (http://IPV4:PORT) on the first line, the secret's name
 * on the second.  Any failure is one line on stderr and exit status 3 (the LibOS then stops
 * the boot and, knowing the reason was given, adds no line of its own).  Built static with OpenSSL's libcrypto, so that the initfs needs no libraries.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#define SYS_MOUNT_ROOTFS 363
#define MAX_KEY 32
#define CONF "/etc/init_ra.conf"
/* "this init has said why, in one line": the LibOS adds no line of its own (kernel/stages.py) */
#define SAID_WHY 3

typedef struct { uint8_t d[64]; } sgx_report_data_t;
typedef struct {
    sgx_report_data_t *report_data;
    uint32_t *quote_len;
    uint8_t *quote_buf;
} sgxioc_gen_dcap_quote_arg_t;
#define SGXIOC_GET_DCAP_QUOTE_SIZE _IOR('s', 7, uint32_t)
#define SGXIOC_GEN_DCAP_QUOTE _IOWR('s', 8, sgxioc_gen_dcap_quote_arg_t)

static char url[256], name[128];
static char host[64];
static int port;

static void fail(const char *fmt, const char *what) {
    fprintf(stderr, "init_ra: ");
    fprintf(stderr, fmt, what);
    fputc('\n', stderr);
    exit(SAID_WHY);
}

static void *need(void *p) {
    if (!p)
        fail("%s", "out of memory");
    return p;
}

static void read_conf(void) {
    FILE *f = fopen(CONF, "r");
    if (!f)
        fail("cannot read " CONF ": %s (build with `occlum build --init-ra URL`)", strerror(errno));
    if (!fgets(url, sizeof url, f) || !fgets(name, sizeof name, f))
        fail("%s holds no broker URL and secret name", CONF);
    fclose(f);
    url[strcspn(url, "\n")] = 0;
    name[strcspn(name, "\n")] = 0;
    char rest[8];
    if (sscanf(url, "http://%63[0-9.]:%d%7s", host, &port, rest) != 2 || port <= 0 || port > 65535)
        fail("the broker URL %s is not http://IPV4:PORT", url);
    if (!*name || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
                      != strlen(name))
        fail("the secret name %s is not [A-Za-z0-9._-]+", name);
}

static char *b64(const uint8_t *data, size_t len) {
    char *out = need(malloc(4 * ((len + 2) / 3) + 1));
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

/* the decoded length, or -1 */
static long unb64(const char *text, uint8_t *out) {
    size_t n = strlen(text);
    int len = EVP_DecodeBlock(out, (const unsigned char *)text, (int)n);
    if (len < 0)
        return -1;
    while (n > 0 && text[n - 1] == '=') { /* EVP_DecodeBlock counts the padding */
        n--;
        len--;
    }
    return len;
}

/* the string value of "key" in the broker's flat JSON object (its values hold no escapes) */
static char *field(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *at = strstr(json, pat);
    if (!at)
        return NULL;
    at += strlen(pat);
    const char *end = strchr(at, '"');
    return end ? need(strndup(at, (size_t)(end - at))) : NULL;
}

/* POST body to path; the answer's body, or one line and exit when it is not a 200 */
static char *post(const char *path, const char *body) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (s < 0)
        fail("cannot create a socket: %s", strerror(errno));
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        fail("the broker URL %s is not http://IPV4:PORT", url);
    struct timeval tv = { .tv_sec = 30 }; /* a broker that accepts and never answers */
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
        fprintf(stderr, "init_ra: cannot reach the key broker at %s: %s\n", url, strerror(errno));
        exit(SAID_WHY);
    }
    size_t blen = strlen(body);
    char *req = need(malloc(blen + 512));
    int n = snprintf(req, blen + 512,
                     "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     path, host, port, blen, body);
    for (int off = 0; off < n;) {
        ssize_t w = write(s, req + off, (size_t)(n - off));
        if (w <= 0)
            fail("the key broker at %s closed the connection", url);
        off += (int)w;
    }
    size_t cap = 65536, len = 0;
    char *buf = need(malloc(cap));
    for (;;) {
        if (len + 1 == cap)
            buf = need(realloc(buf, cap *= 2));
        ssize_t r = read(s, buf + len, cap - len - 1);
        if (r < 0)
            fail("no answer from the key broker: %s", strerror(errno));
        if (r == 0)
            break;
        len += (size_t)r;
    }
    buf[len] = 0;
    close(s);
    free(req);
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        fail("the key broker at %s did not answer HTTP", url);
    char *start = strstr(buf, "\r\n\r\n");
    char *answer = start ? start + 4 : buf;
    if (status != 200) {
        char *why = field(answer, "error");
        fprintf(stderr, "init_ra: the key broker refused the image key %s (%d): %s\n", name,
                status, why ? why : "no reason given");
        exit(SAID_WHY);
    }
    return answer;
}

/* the image key from the secret's text (hex pairs, dashes optional: Occlum's key file) */
static size_t parse_key(const uint8_t *text, size_t n, uint8_t *key) {
    size_t got = 0;
    int high = -1;
    for (size_t i = 0; i < n; i++) {
        int c = text[i], v;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v = c - 'A' + 10;
        else if ((c == '-' || c == '\n' || c == ' ') && high < 0)
            continue;
        else
            return 0;
        if (high < 0) {
            high = v;
            continue;
        }
        if (got == MAX_KEY)
            return 0;
        key[got++] = (uint8_t)(high << 4 | v);
        high = -1;
    }
    return high >= 0 || (got != 16 && got != 32) ? 0 : got;
}

int main(void) {
    read_conf();
    char *answer = post("/v1/challenge", "{}");
    uint8_t nonce[64];
    char *nonce_b64 = field(answer, "nonce");
    if (!nonce_b64 || strlen(nonce_b64) > 80 || unb64(nonce_b64, nonce) != 32)
        fail("the key broker at %s sent no 32-byte nonce", url);

    EVP_PKEY *mine = NULL;
    EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
    uint8_t pub[32];
    size_t publen = sizeof pub;
    if (!kctx || EVP_PKEY_keygen_init(kctx) <= 0 || EVP_PKEY_keygen(kctx, &mine) <= 0 ||
        EVP_PKEY_get_raw_public_key(mine, pub, &publen) <= 0 || publen != 32)
        fail("%s", "cannot make an X25519 key");

    sgx_report_data_t rd = { { 0 } };
    uint8_t bound[64];
    memcpy(bound, nonce, 32);
    memcpy(bound + 32, pub, 32);
    SHA256(bound, 64, rd.d);
    int fd = open("/dev/sgx", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fail("cannot open /dev/sgx: %s", strerror(errno));
    uint32_t size = 0;
    if (ioctl(fd, SGXIOC_GET_DCAP_QUOTE_SIZE, &size) < 0)
        fail("SGXIOC_GET_DCAP_QUOTE_SIZE: %s", strerror(errno));
    uint8_t *quote = need(calloc(1, size));
    uint32_t qlen = size;
    sgxioc_gen_dcap_quote_arg_t gq = { &rd, &qlen, quote };
    if (ioctl(fd, SGXIOC_GEN_DCAP_QUOTE, &gq) < 0)
        fail("SGXIOC_GEN_DCAP_QUOTE: %s", strerror(errno));
    close(fd);

    char *quote_b64 = b64(quote, qlen), *pub_b64 = b64(pub, 32);
    char *body = need(malloc(strlen(quote_b64) + 256));
    sprintf(body, "{\"nonce\": \"%s\", \"quote\": \"%s\", \"pubkey\": \"%s\"}", nonce_b64,
            quote_b64, pub_b64);
    char path[256];
    snprintf(path, sizeof path, "/v1/secret/%s", name);
    answer = post(path, body);

    char *peer_b64 = field(answer, "pubkey"), *iv_b64 = field(answer, "iv");
    char *ct_b64 = field(answer, "ciphertext");
    if (!peer_b64 || !iv_b64 || !ct_b64 || strlen(peer_b64) > 80 || strlen(iv_b64) > 80)
        fail("the key broker at %s sent an incomplete answer", url);
    uint8_t peer[64], iv[64];
    uint8_t *ct = need(malloc(strlen(ct_b64) + 1));
    long ctlen = unb64(ct_b64, ct);
    if (unb64(peer_b64, peer) != 32 || unb64(iv_b64, iv) != 12 || ctlen < 16)
        fail("the key broker at %s sent a malformed envelope", url);
    EVP_PKEY *theirs = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
    EVP_PKEY_CTX *dctx = EVP_PKEY_CTX_new(mine, NULL);
    uint8_t shared[32];
    size_t slen = sizeof shared;
    if (!theirs || !dctx || EVP_PKEY_derive_init(dctx) <= 0 ||
        EVP_PKEY_derive_set_peer(dctx, theirs) <= 0 || EVP_PKEY_derive(dctx, shared, &slen) <= 0)
        fail("%s", "the X25519 exchange failed");

    char info[256];
    int infolen = snprintf(info, sizeof info, "occlum-kbs v1 secret %s", name);
    uint8_t wrap[32];
    size_t wraplen = sizeof wrap;
    EVP_PKEY_CTX *hctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    if (!hctx || EVP_PKEY_derive_init(hctx) <= 0 ||
        EVP_PKEY_CTX_set_hkdf_md(hctx, EVP_sha256()) <= 0 ||
        EVP_PKEY_CTX_set1_hkdf_salt(hctx, nonce, 32) <= 0 ||
        EVP_PKEY_CTX_set1_hkdf_key(hctx, shared, (int)slen) <= 0 ||
        EVP_PKEY_CTX_add1_hkdf_info(hctx, (unsigned char *)info, infolen) <= 0 ||
        EVP_PKEY_derive(hctx, wrap, &wraplen) <= 0)
        fail("%s", "HKDF failed");

    size_t textlen = (size_t)ctlen - 16;
    uint8_t *text = need(malloc(textlen + 1));
    int outl = 0, fin = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (!c || EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, wrap, iv) <= 0 ||
        EVP_DecryptUpdate(c, NULL, &outl, (const uint8_t *)name, (int)strlen(name)) <= 0 ||
        EVP_DecryptUpdate(c, text, &outl, ct, (int)textlen) <= 0 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, ct + textlen) <= 0 ||
        EVP_DecryptFinal_ex(c, text + outl, &fin) <= 0)
        fail("the key broker's envelope does not open (%s)", "bad tag");

    uint8_t key[MAX_KEY];
    size_t len = parse_key(text, textlen, key);
    OPENSSL_cleanse(text, textlen);
    OPENSSL_cleanse(wrap, sizeof wrap);
    if (!len)
        fail("the secret %s is not an image key (16 or 32 bytes as hex pairs)", name);
    /* on failure the LibOS has already said why, in one line */
    long r = syscall(SYS_MOUNT_ROOTFS, key, len);
    OPENSSL_cleanse(key, sizeof key);
    return r == 0 ? 0 : 1;
}
