/* Several pthreads read and verify while one appends (and rewrites every
 * third payload with the same bytes, leaving dead records) and one compacts
 * the store over and over; one ps_store shared. Readers only ask for ids the
 * writer has published (after append returned), so every read must succeed
 * with exactly the written bytes, whichever log it is served from. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <stdint.h>
#include "payload_store.h"
#include "check.h"

enum { READERS = 4 };
static uint64_t TOTAL = 20000; /* argv[1] overrides (smaller under valgrind) */

static ps_store *store;
static atomic_uint_fast64_t published; /* ids [0, published) are readable */

static size_t len_of(uint64_t i) { return (size_t)((i * 37) % 3000); }

static void *writer(void *arg) {
    (void)arg;
    unsigned char buf[3000];
    for (uint64_t i = 0; i < TOTAL; i++) {
        ps_edge_id id = {0xABCD, i};
        fill_payload(buf, len_of(i), i);
        CHECK_ST(ps_store_append(store, id, buf, len_of(i), PS_COMPRESSION_AUTO, NULL), PS_OK);
        if (i % 3 == 0) CHECK_ST(ps_store_append(store, id, buf, len_of(i), PS_COMPRESSION_AUTO, NULL), PS_OK);
        atomic_store(&published, i + 1);
        if (i % 5000 == 4999) CHECK_ST(ps_store_sync(store), PS_OK);
    }
    return NULL;
}

static void *reader(void *arg) {
    uint64_t x = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ULL + 7;
    unsigned char want[3000], got[3000];
    uint64_t reads = 0;
    for (;;) {
        uint64_t n = atomic_load(&published);
        if (n == TOTAL && reads > 200) break;
        if (reads >= 4 * TOTAL) break; /* enough verification; do not starve the writer */
        if (n == 0) continue;
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        uint64_t i = x % n;
        ps_edge_id id = {0xABCD, i};
        size_t len = 0;
        CHECK_ST(ps_store_get_into(store, id, got, sizeof got, &len), PS_OK);
        fill_payload(want, len_of(i), i);
        CHECK(len == len_of(i) && memcmp(got, want, len) == 0);
        ps_buf b = {NULL, 0};
        CHECK_ST(ps_store_get(store, id, &b), PS_OK);
        CHECK(b.len == len && (len == 0 || memcmp(b.data, want, len) == 0));
        ps_buf_free(&b);
        ps_edge_id missing = {0xDEAD, i};
        CHECK(!ps_store_contains(store, missing));
        reads++;
    }
    return (void *)(uintptr_t)reads;
}

static void *compactor(void *arg) {
    (void)arg;
    uint64_t rounds = 0;
    ps_compact_report r;
    do {
        CHECK_ST(ps_store_compact(store, &r), PS_OK);
        rounds++;
        CHECK(r.generation == rounds);
    } while (atomic_load(&published) < TOTAL);
    return (void *)(uintptr_t)rounds;
}

int main(int argc, char **argv) {
    if (argc > 1) TOTAL = strtoull(argv[1], NULL, 10);
    CHECK(TOTAL > 0);
    char *dir = make_temp_dir("cthreads");
    CHECK_ST(ps_store_open(dir, NULL, &store), PS_OK);
    pthread_t w, c, r[READERS];
    CHECK(pthread_create(&w, NULL, writer, NULL) == 0);
    CHECK(pthread_create(&c, NULL, compactor, NULL) == 0);
    for (uintptr_t k = 0; k < READERS; k++) CHECK(pthread_create(&r[k], NULL, reader, (void *)(k + 1)) == 0);
    CHECK(pthread_join(w, NULL) == 0);
    void *compactions;
    CHECK(pthread_join(c, &compactions) == 0);
    uint64_t total_reads = 0;
    for (int k = 0; k < READERS; k++) {
        void *res;
        CHECK(pthread_join(r[k], &res) == 0);
        total_reads += (uint64_t)(uintptr_t)res;
    }
    CHECK(ps_store_len(store) == TOTAL);
    /* once more, all published: only the rewritten copies are dead */
    ps_stats st;
    ps_compact_report last;
    CHECK_ST(ps_store_compact(store, &last), PS_OK);
    CHECK_ST(ps_store_stats(store, &st), PS_OK);
    CHECK(st.dead_bytes == 0 && last.payloads == TOTAL);
    for (uint64_t i = 0; i < TOTAL; i++) {
        unsigned char want[3000], got[3000];
        size_t len = 0;
        ps_edge_id id = {0xABCD, i};
        CHECK_ST(ps_store_get_into(store, id, got, sizeof got, &len), PS_OK);
        fill_payload(want, len_of(i), i);
        CHECK(len == len_of(i) && memcmp(got, want, len) == 0);
    }
    CHECK_ST(ps_store_close(store), PS_OK);
    remove_dir(dir);
    free(dir);
    printf("test_threads: %llu appends, %llu verified reads on %d threads, %llu compactions meanwhile\n", (unsigned long long)TOTAL, (unsigned long long)total_reads, READERS, (unsigned long long)(uintptr_t)compactions);
    return 0;
}
