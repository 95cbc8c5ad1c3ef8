/* Tiny assertion helpers shared by the C tests. */
#ifndef PS_TEST_CHECK_H
#define PS_TEST_CHECK_H
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

#define CHECK_ST(expr, want)                                                 \
    do {                                                                     \
        ps_status st_ = (expr);                                              \
        if (st_ != (want)) {                                                 \
            fprintf(stderr, "%s:%d: %s returned %d (%s), wanted %d (%s)\n",  \
                    __FILE__, __LINE__, #expr, st_, ps_status_str(st_),      \
                    (int)(want), ps_status_str(want));                       \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

/* Deterministic payload bytes for (id, len). */
static void fill_payload(unsigned char *p, size_t len, unsigned long long seed) {
    static const char *words[] = {"edge ", "trace ", "agent ", "tool ", "call ", "result ", "{\"k\": ", "1234 "};
    unsigned long long x = seed * 0x9E3779B97F4A7C15ULL + 1;
    size_t i = 0;
    while (i < len) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        const char *w = words[x % 8];
        while (*w && i < len) p[i++] = (unsigned char)*w++;
    }
}

static char *make_temp_dir(const char *tag) {
    char tmpl[256];
    const char *base = getenv("TMPDIR");
    snprintf(tmpl, sizeof tmpl, "%s/ps-%s-XXXXXX", base ? base : "/tmp", tag);
    char *d = mkdtemp(tmpl);
    CHECK(d != NULL);
    char *out = malloc(strlen(d) + 1);
    CHECK(out != NULL);
    strcpy(out, d);
    return out;
}

static void remove_dir(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}
#endif
