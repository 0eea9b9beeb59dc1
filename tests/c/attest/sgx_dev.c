/* Occlum's /dev/sgx, written against Occlum's published argument structures (test/ioctl/main.c
 * and the SGX SDK's sgx_report.h, sgx_key.h, sgx_quote_3.h layouts): self target, a report
 * with its report data, verified; seal keys; a DCAP quote, written to argv[1]; bad pointers
 * and sizes. It runs inside the LibOS only (there is no /dev/sgx natively): its output is
 * compared with tests/c/attest/sgx_dev.expected, and the pytest verifies the quote on the host.
 * Key bytes are printed on "seal-*" lines, which the pytest compares across two runs and
 * drops from the comparison with the expected file.
 */
#include "../common.h"

#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

typedef struct { uint8_t d[64]; } sgx_report_data_t;
typedef struct { uint64_t flags, xfrm; } sgx_attributes_t;
typedef struct {
    uint8_t cpu_svn[16];
    uint32_t misc_select;
    uint8_t reserved1[12];
    uint8_t isv_ext_prod_id[16];
    sgx_attributes_t attributes;
    uint8_t mr_enclave[32];
    uint8_t reserved2[32];
    uint8_t mr_signer[32];
    uint8_t reserved3[32];
    uint8_t config_id[64];
    uint16_t isv_prod_id;
    uint16_t isv_svn;
    uint16_t config_svn;
    uint8_t reserved4[42];
    uint8_t isv_family_id[16];
    sgx_report_data_t report_data;
} sgx_report_body_t;
typedef struct {
    sgx_report_body_t body;
    uint8_t key_id[32];
    uint8_t mac[16];
} sgx_report_t;
typedef struct {
    uint8_t mr_enclave[32];
    sgx_attributes_t attributes;
    uint8_t reserved1[2];
    uint16_t config_svn;
    uint32_t misc_select;
    uint8_t reserved2[8];
    uint8_t config_id[64];
    uint8_t reserved3[384];
} sgx_target_info_t;
typedef struct {
    uint16_t key_name;
    uint16_t key_policy;
    uint16_t isv_svn;
    uint16_t reserved1;
    uint8_t cpu_svn[16];
    sgx_attributes_t attribute_mask;
    uint8_t key_id[32];
    uint32_t misc_mask;
    uint16_t config_svn;
    uint8_t reserved2[434];
} sgx_key_request_t;
typedef uint8_t sgx_key_128bit_t[16];

typedef struct {
    const sgx_target_info_t *target_info;
    const sgx_report_data_t *report_data;
    sgx_report_t *report;
} sgxioc_create_report_arg_t;
typedef struct {
    const sgx_key_request_t *key_request;
    sgx_key_128bit_t *key;
} sgxioc_get_key_arg_t;
typedef struct {
    sgx_report_data_t *report_data;
    uint32_t *quote_len;
    uint8_t *quote_buf;
} sgxioc_gen_dcap_quote_arg_t;
typedef struct {
    const uint8_t *quote_buf;
    uint32_t quote_size;
    uint32_t *collateral_expiration_status;
    uint32_t *quote_verification_result;
    uint32_t supplemental_data_size;
    uint8_t *supplemental_data;
} sgxioc_ver_dcap_quote_arg_t;

#define SGXIOC_IS_EDMM_SUPPORTED _IOR('s', 0, int)
#define SGXIOC_SELF_TARGET _IOR('s', 3, sgx_target_info_t)
#define SGXIOC_CREATE_REPORT _IOWR('s', 4, sgxioc_create_report_arg_t)
#define SGXIOC_VERIFY_REPORT _IOW('s', 5, sgx_report_t)
#define SGXIOC_GET_DCAP_QUOTE_SIZE _IOR('s', 7, uint32_t)
#define SGXIOC_GEN_DCAP_QUOTE _IOWR('s', 8, sgxioc_gen_dcap_quote_arg_t)
#define SGXIOC_GET_DCAP_SUPPLEMENTAL_SIZE _IOR('s', 9, uint32_t)
#define SGXIOC_VER_DCAP_QUOTE _IOWR('s', 10, sgxioc_ver_dcap_quote_arg_t)
#define SGXIOC_GET_KEY _IOWR('s', 11, sgxioc_get_key_arg_t)

#define KEYNAME_SEAL 4
#define KEYPOLICY_MRENCLAVE 1
#define KEYPOLICY_MRSIGNER 2

static void hex(const char *label, const uint8_t *p, size_t n)
{
    printf("%s: ", label);
    for (size_t i = 0; i < n; i++)
        printf("%02x", p[i]);
    printf("\n");
}

static int seal_key(int fd, uint16_t policy, uint16_t isv_svn, sgx_key_128bit_t *key)
{
    sgx_key_request_t req;
    memset(&req, 0, sizeof req);
    req.key_name = KEYNAME_SEAL;
    req.key_policy = policy;
    req.isv_svn = isv_svn;
    req.attribute_mask.flags = 0xFF0000000000000BULL; /* the SDK's default mask */
    sgxioc_get_key_arg_t arg = { &req, key };
    return ioctl(fd, SGXIOC_GET_KEY, &arg);
}

int main(int argc, char **argv)
{
    const char *out = argc > 1 ? argv[1] : "/host/quote.bin";
    _Static_assert(sizeof(sgx_report_body_t) == 384, "report body");
    _Static_assert(sizeof(sgx_report_t) == 432, "report");
    _Static_assert(sizeof(sgx_target_info_t) == 512, "target info");
    _Static_assert(sizeof(sgx_key_request_t) == 512, "key request");
    _Static_assert(sizeof(sgxioc_ver_dcap_quote_arg_t) == 48, "ver arg");
    printf("SGXIOC_GEN_DCAP_QUOTE: %#lx\n", (unsigned long)SGXIOC_GEN_DCAP_QUOTE);
    printf("SGXIOC_VER_DCAP_QUOTE: %#lx\n", (unsigned long)SGXIOC_VER_DCAP_QUOTE);

    int fd = OK("open /dev/sgx", open("/dev/sgx", O_RDONLY));
    struct stat st;
    OK("fstat", fstat(fd, &st));
    printf("is a character device: %d\n", S_ISCHR(st.st_mode));
    char byte;
    ERR("read", read(fd, &byte, 1), EBADF);

    int edmm = -1;
    OK("IS_EDMM_SUPPORTED", ioctl(fd, SGXIOC_IS_EDMM_SUPPORTED, &edmm));
    printf("edmm: %d\n", edmm);

    /* self target, a report for it, verified */
    sgx_target_info_t ti;
    OK("SELF_TARGET", ioctl(fd, SGXIOC_SELF_TARGET, &ti));
    sgx_report_data_t rd;
    memset(&rd, 0, sizeof rd);
    strcpy((char *)rd.d, "sgx_dev report data");
    sgx_report_t report;
    sgxioc_create_report_arg_t cr = { &ti, &rd, &report };
    OK("CREATE_REPORT", ioctl(fd, SGXIOC_CREATE_REPORT, &cr));
    CHECK(memcmp(report.body.report_data.d, rd.d, 64) == 0);
    CHECK(memcmp(report.body.mr_enclave, ti.mr_enclave, 32) == 0);
    printf("report isv_prod_id %u isv_svn %u\n", report.body.isv_prod_id, report.body.isv_svn);
    printf("report flags %#llx\n", (unsigned long long)report.body.attributes.flags);
    hex("mrenclave", report.body.mr_enclave, 32);
    OK("VERIFY_REPORT", ioctl(fd, SGXIOC_VERIFY_REPORT, &report));
    sgx_report_t tampered = report;
    tampered.body.isv_svn ^= 1;
    ERR("VERIFY_REPORT tampered", ioctl(fd, SGXIOC_VERIFY_REPORT, &tampered), EINVAL);
    /* a report for another enclave does not verify here */
    sgx_target_info_t other = ti;
    other.mr_enclave[0] ^= 0xff;
    cr.target_info = &other;
    OK("CREATE_REPORT other target", ioctl(fd, SGXIOC_CREATE_REPORT, &cr));
    ERR("VERIFY_REPORT other target", ioctl(fd, SGXIOC_VERIFY_REPORT, &report), EINVAL);
    sgxioc_create_report_arg_t nul = { NULL, NULL, &report };
    OK("CREATE_REPORT NULL target and data", ioctl(fd, SGXIOC_CREATE_REPORT, &nul));
    OK("VERIFY_REPORT self", ioctl(fd, SGXIOC_VERIFY_REPORT, &report));

    /* seal keys: MRENCLAVE and MRSIGNER policies give different keys */
    sgx_key_128bit_t k_enclave, k_signer;
    OK("GET_KEY MRENCLAVE", seal_key(fd, KEYPOLICY_MRENCLAVE, 0, &k_enclave));
    OK("GET_KEY MRSIGNER", seal_key(fd, KEYPOLICY_MRSIGNER, 0, &k_signer));
    printf("policies differ: %d\n", memcmp(k_enclave, k_signer, 16) != 0);
    hex("seal-mrenclave", k_enclave, 16);
    hex("seal-mrsigner", k_signer, 16);
    sgx_key_128bit_t k2;
    ERR("GET_KEY newer ISVSVN", seal_key(fd, KEYPOLICY_MRSIGNER, 1000, &k2), EINVAL);
    sgxioc_get_key_arg_t gk = { NULL, &k2 };
    ERR("GET_KEY NULL request", ioctl(fd, SGXIOC_GET_KEY, &gk), EINVAL);

    /* a quote */
    uint32_t size = 0;
    OK("GET_DCAP_QUOTE_SIZE", ioctl(fd, SGXIOC_GET_DCAP_QUOTE_SIZE, &size));
    uint8_t *quote = calloc(1, size);
    uint32_t len = size;
    sgxioc_gen_dcap_quote_arg_t gq = { &rd, &len, quote };
    OK("GEN_DCAP_QUOTE", ioctl(fd, SGXIOC_GEN_DCAP_QUOTE, &gq));
    printf("quote length matches size: %d\n", len == size);
    printf("quote version %u key type %u\n", quote[0] | quote[1] << 8, quote[2] | quote[3] << 8);
    sgx_report_body_t *qbody = (sgx_report_body_t *)(quote + 48);
    CHECK(memcmp(qbody->report_data.d, rd.d, 64) == 0);
    CHECK(memcmp(qbody->mr_enclave, ti.mr_enclave, 32) == 0);

    uint32_t supp_size = 99;
    OK("GET_DCAP_SUPPLEMENTAL_SIZE", ioctl(fd, SGXIOC_GET_DCAP_SUPPLEMENTAL_SIZE, &supp_size));
    printf("supplemental size %u\n", supp_size);
    uint32_t expiration = 7, result = 7;
    sgxioc_ver_dcap_quote_arg_t vq = { quote, size, &expiration, &result, 0, NULL };
    OK("VER_DCAP_QUOTE", ioctl(fd, SGXIOC_VER_DCAP_QUOTE, &vq));
    printf("verification result %#x expiration %u\n", result, expiration);
    quote[60] ^= 1;
    OK("VER_DCAP_QUOTE flipped", ioctl(fd, SGXIOC_VER_DCAP_QUOTE, &vq));
    printf("flipped result %#x\n", result);
    quote[60] ^= 1;
    vq.quote_size = 20;
    ERR("VER_DCAP_QUOTE short", ioctl(fd, SGXIOC_VER_DCAP_QUOTE, &vq), EINVAL);

    /* bad pointers and sizes */
    void *bad = (void *)16;
    void *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ERR("SELF_TARGET bad pointer", ioctl(fd, SGXIOC_SELF_TARGET, bad), EFAULT);
    ERR("SELF_TARGET read-only buffer", ioctl(fd, SGXIOC_SELF_TARGET, ro), EFAULT);
    ERR("CREATE_REPORT bad arg", ioctl(fd, SGXIOC_CREATE_REPORT, bad), EFAULT);
    sgxioc_create_report_arg_t badcr = { bad, NULL, &report };
    ERR("CREATE_REPORT bad target", ioctl(fd, SGXIOC_CREATE_REPORT, &badcr), EFAULT);
    sgxioc_create_report_arg_t nulrep = { NULL, NULL, NULL };
    ERR("CREATE_REPORT NULL report", ioctl(fd, SGXIOC_CREATE_REPORT, &nulrep), EINVAL);
    ERR("VERIFY_REPORT bad pointer", ioctl(fd, SGXIOC_VERIFY_REPORT, bad), EFAULT);
    uint32_t small = size - 1;
    sgxioc_gen_dcap_quote_arg_t gsmall = { &rd, &small, quote };
    ERR("GEN_DCAP_QUOTE small buffer", ioctl(fd, SGXIOC_GEN_DCAP_QUOTE, &gsmall), EINVAL);
    sgxioc_gen_dcap_quote_arg_t gbad = { &rd, &len, bad };
    ERR("GEN_DCAP_QUOTE bad buffer", ioctl(fd, SGXIOC_GEN_DCAP_QUOTE, &gbad), EFAULT);
    sgxioc_gen_dcap_quote_arg_t gbadlen = { &rd, bad, quote };
    ERR("GEN_DCAP_QUOTE bad quote_len", ioctl(fd, SGXIOC_GEN_DCAP_QUOTE, &gbadlen), EFAULT);
    sgxioc_gen_dcap_quote_arg_t gbadrd = { bad, &len, quote };
    ERR("GEN_DCAP_QUOTE bad report_data", ioctl(fd, SGXIOC_GEN_DCAP_QUOTE, &gbadrd), EFAULT);
    /* an SGX request on another descriptor is the host's: not a terminal, not a device */
    int null = OK("open /dev/null", open("/dev/null", O_RDONLY));
    ERR("SELF_TARGET on /dev/null", ioctl(null, SGXIOC_SELF_TARGET, &ti), ENOTTY);
    close(null);

    /* the quote, for the host to verify */
    int q = OK("create quote file", open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    CHECK(write(q, quote, size) == (ssize_t)size);
    close(q);
    close(fd);
    if (t_failures) {
        printf("FAILED: %d\n", t_failures);
        return 1;
    }
    printf("PASS\n");
    return 0;
}
