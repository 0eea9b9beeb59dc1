/* Fetch a secret from the key broker (`occlum kbs serve`) from inside an instance: a challenge,
 * an ephemeral X25519 key, a quote from /dev/sgx (SGXIOC_GEN_DCAP_QUOTE, Occlum's ABI) whose
 * report data is SHA-256(nonce || pubkey) || 32 zeros, then the envelope opened with
 * X25519 + HKDF-SHA256 (salt = nonce, info = "occlum-kbs v1 secret " || name) + AES-256-GCM
 * (aad = name). Written against the API of docs/attestation.md, with OpenSSL's libcrypto.
 *
 * usage: kbs_fetch HOST PORT NAME [tamper|replay]  ->  "secret: ..." and exit 0, or
 * "refused: STATUS REASON" and exit 1. "tamper" flips a byte of the quote's MRENCLAVE before
 * sending it; "replay" sends the same request a second time and reports the second answer. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct { uint8_t d[64]; } sgx_report_data_t;
typedef struct {
    sgx_report_data_t *report_data;
    uint32_t *quote_len;
    uint8_t *quote_buf;
} sgxioc_gen_dcap_quote_arg_t;
#define SGXIOC_GET_DCAP_QUOTE_SIZE _IOR('s', 7, uint32_t)
#define SGXIOC_GEN_DCAP_QUOTE _IOWR('s', 8, sgxioc_gen_dcap_quote_arg_t)

static void die(const char *what) {
    fprintf(stderr, "kbs_fetch: %s\n", what);
    exit(2);
}

static char *b64(const uint8_t *data, size_t len) {
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

static size_t unb64(const char *text, uint8_t *out) {
    size_t n = strlen(text);
    int len = EVP_DecodeBlock(out, (const unsigned char *)text, (int)n);
    if (len < 0)
        die("bad base64 in the answer");
    while (n > 0 && text[n - 1] == '=') { /* EVP_DecodeBlock counts the padding */
        n--;
        len--;
    }
    return (size_t)len;
}

/* the string value of "key" in a flat JSON object (no escapes in the values we read) */
static char *field(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *at = strstr(json, pat);
    if (!at)
        return NULL;
    at += strlen(pat);
    const char *end = strchr(at, '"');
    if (!end)
        return NULL;
    return strndup(at, (size_t)(end - at));
}

/* POST body to path; returns the HTTP status, *answer the body */
static int post(const char *host, int port, const char *path, const char *body, char **answer) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    if (s < 0 || inet_pton(AF_INET, host, &a.sin_addr) != 1)
        die("bad address");
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("connect");
        exit(2);
    }
    size_t blen = strlen(body);
    char *req = malloc(blen + 512);
    int n = snprintf(req, blen + 512,
                     "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     path, host, port, blen, body);
    for (int off = 0; off < n;) {
        ssize_t w = write(s, req + off, (size_t)(n - off));
        if (w <= 0)
            die("write to the broker failed");
        off += (int)w;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
        ssize_t r = read(s, buf + len, cap - len - 1);
        if (r < 0)
            die("read from the broker failed");
        if (r == 0)
            break;
        len += (size_t)r;
    }
    buf[len] = 0;
    close(s);
    free(req);
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        die("not an HTTP answer");
    char *start = strstr(buf, "\r\n\r\n");
    *answer = start ? start + 4 : buf;
    return status;
}

static void refused(int status, const char *answer) {
    char *why = field(answer, "error");
    printf("refused: %d %s\n", status, why ? why : answer);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5)
        die("usage: kbs_fetch HOST PORT NAME [tamper|replay]");
    const char *mode = argc == 5 ? argv[4] : "";
    const char *host = argv[1], *name = argv[3];
    int port = atoi(argv[2]);
    char *answer;

    int status = post(host, port, "/v1/challenge", "{}", &answer);
    if (status != 200)
        refused(status, answer);
    uint8_t nonce[64];
    char *nonce_b64 = field(answer, "nonce");
    if (!nonce_b64 || unb64(nonce_b64, nonce) != 32)
        die("no 32-byte nonce in the challenge");

    /* the ephemeral key */
    EVP_PKEY *mine = NULL;
    EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
    if (!kctx || EVP_PKEY_keygen_init(kctx) <= 0 || EVP_PKEY_keygen(kctx, &mine) <= 0)
        die("X25519 keygen failed");
    uint8_t pub[32];
    size_t publen = sizeof pub;
    if (EVP_PKEY_get_raw_public_key(mine, pub, &publen) <= 0 || publen != 32)
        die("X25519 public key");

    /* the quote, binding nonce and key */
    sgx_report_data_t rd = { { 0 } };
    uint8_t bound[64];
    memcpy(bound, nonce, 32);
    memcpy(bound + 32, pub, 32);
    SHA256(bound, 64, rd.d);
    int fd = open("/dev/sgx", O_RDONLY);
    if (fd < 0) {
        perror("open /dev/sgx");
        exit(2);
    }
    uint32_t size = 0;
    if (ioctl(fd, SGXIOC_GET_DCAP_QUOTE_SIZE, &size) < 0)
        die("SGXIOC_GET_DCAP_QUOTE_SIZE");
    uint8_t *quote = calloc(1, size);
    uint32_t qlen = size;
    sgxioc_gen_dcap_quote_arg_t gq = { &rd, &qlen, quote };
    if (ioctl(fd, SGXIOC_GEN_DCAP_QUOTE, &gq) < 0)
        die("SGXIOC_GEN_DCAP_QUOTE");
    close(fd);
    if (strcmp(mode, "tamper") == 0)
        quote[48 + 64] ^= 1;

    char *quote_b64 = b64(quote, qlen), *pub_b64 = b64(pub, 32);
    char *body = malloc(strlen(quote_b64) + 256);
    sprintf(body, "{\"nonce\": \"%s\", \"quote\": \"%s\", \"pubkey\": \"%s\"}", nonce_b64,
            quote_b64, pub_b64);
    char path[256];
    snprintf(path, sizeof path, "/v1/secret/%s", name);
    status = post(host, port, path, body, &answer);
    if (status == 200 && strcmp(mode, "replay") == 0)
        status = post(host, port, path, body, &answer);
    if (status != 200)
        refused(status, answer);

    /* the envelope */
    char *peer_b64 = field(answer, "pubkey"), *iv_b64 = field(answer, "iv");
    char *ct_b64 = field(answer, "ciphertext");
    if (!peer_b64 || !iv_b64 || !ct_b64)
        die("incomplete answer");
    uint8_t peer[64], iv[64];
    uint8_t *ct = malloc(strlen(ct_b64));
    size_t ctlen = unb64(ct_b64, ct);
    if (unb64(peer_b64, peer) != 32 || unb64(iv_b64, iv) != 12 || ctlen < 16)
        die("malformed envelope");
    EVP_PKEY *theirs = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
    EVP_PKEY_CTX *dctx = EVP_PKEY_CTX_new(mine, NULL);
    uint8_t shared[32];
    size_t slen = sizeof shared;
    if (!theirs || !dctx || EVP_PKEY_derive_init(dctx) <= 0 ||
        EVP_PKEY_derive_set_peer(dctx, theirs) <= 0 || EVP_PKEY_derive(dctx, shared, &slen) <= 0)
        die("X25519 exchange failed");

    char info[256];
    int infolen = snprintf(info, sizeof info, "occlum-kbs v1 secret %s", name);
    uint8_t key[32];
    size_t keylen = sizeof key;
    EVP_PKEY_CTX *hctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    if (!hctx || EVP_PKEY_derive_init(hctx) <= 0 ||
        EVP_PKEY_CTX_set_hkdf_md(hctx, EVP_sha256()) <= 0 ||
        EVP_PKEY_CTX_set1_hkdf_salt(hctx, nonce, 32) <= 0 ||
        EVP_PKEY_CTX_set1_hkdf_key(hctx, shared, (int)slen) <= 0 ||
        EVP_PKEY_CTX_add1_hkdf_info(hctx, (unsigned char *)info, infolen) <= 0 ||
        EVP_PKEY_derive(hctx, key, &keylen) <= 0)
        die("HKDF failed");

    size_t textlen = ctlen - 16;
    uint8_t *text = malloc(textlen + 1);
    int outl = 0, fin = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    const uint8_t *aad = (const uint8_t *)name;
    if (!c || EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv) <= 0 ||
        EVP_DecryptUpdate(c, NULL, &outl, aad, (int)strlen(name)) <= 0 ||
        EVP_DecryptUpdate(c, text, &outl, ct, (int)textlen) <= 0 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, ct + textlen) <= 0)
        die("AES-GCM setup failed");
    if (EVP_DecryptFinal_ex(c, text + outl, &fin) <= 0)
        die("the secret does not open (bad tag)");
    text[textlen] = 0;
    printf("secret: %s\n", (char *)text);
    return 0;
}
