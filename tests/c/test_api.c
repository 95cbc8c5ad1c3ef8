/* Every function of payload_store.h through its success and error paths.
 * Built against the shared and the static library and run under valgrind
 * (zero errors, zero leaks) by tests/run-all.sh. */
#define _GNU_SOURCE
#include <string.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/stat.h>
#include "payload_store.h"
#include "check.h"

static int log_calls = 0;
static void on_log(void *user, int32_t level, const char *msg) {
    CHECK(user == &log_calls);
    CHECK(level >= PS_LOG_ERROR && level <= PS_LOG_INFO);
    CHECK(msg != NULL && strlen(msg) > 0);
    log_calls++;
}

static void test_versions_and_statuses(void) {
    CHECK(ps_version_number() == PS_VERSION_NUMBER);
    CHECK(strcmp(ps_version_string(), PS_VERSION_STRING) == 0);
    const ps_status all[] = {PS_OK, PS_NOT_FOUND, PS_ERR_NULL_ARGUMENT, PS_ERR_INVALID_ARGUMENT,
                             PS_ERR_INVALID_COMPRESSION, PS_ERR_BUFFER_TOO_SMALL, PS_ERR_PAYLOAD_TOO_LARGE,
                             PS_ERR_INVALID_LOCATION, PS_ERR_INVALID_HANDLE, PS_ERR_LOCKED, PS_ERR_READ_ONLY,
                             PS_ERR_POISONED, PS_ERR_UNSUPPORTED, PS_ERR_IO, PS_ERR_NO_SPACE, PS_ERR_NOT_A_STORE,
                             PS_ERR_UNSUPPORTED_VERSION, PS_ERR_CORRUPT, PS_ERR_CHECKSUM_MISMATCH, PS_ERR_PANIC};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *s = ps_status_str(all[i]);
        CHECK(s != NULL && strlen(s) > 0 && strcmp(s, "unknown status") != 0);
        for (size_t j = 0; j < i; j++) CHECK(strcmp(s, ps_status_str(all[j])) != 0);
    }
    CHECK(strcmp(ps_status_str(-7), "unknown status") == 0);
    CHECK(PS_OK == 0);
}

static void test_options(void) {
    ps_options_free(NULL);
    ps_options *o = ps_options_new();
    CHECK(o != NULL);
    CHECK_ST(ps_options_set_index_backend(o, PS_INDEX_HASHMAP), PS_OK);
    CHECK_ST(ps_options_set_index_backend(o, 7), PS_ERR_INVALID_ARGUMENT);
    CHECK_ST(ps_options_set_index_backend(NULL, PS_INDEX_HASHMAP), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_options_set_sync_policy(o, PS_SYNC_GROUP_COMMIT), PS_OK);
    CHECK_ST(ps_options_set_sync_policy(o, -1), PS_ERR_INVALID_ARGUMENT);
    CHECK_ST(ps_options_set_sync_policy(NULL, 0), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_options_set_log_callback(o, on_log, &log_calls), PS_OK);
    CHECK_ST(ps_options_set_log_callback(o, NULL, NULL), PS_OK);
    CHECK_ST(ps_options_set_log_callback(NULL, on_log, NULL), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_options_set_read_only(o, false), PS_OK);
    CHECK_ST(ps_options_set_repair(o, true), PS_OK);
    CHECK_ST(ps_options_set_compression_enabled(o, true), PS_OK);
    CHECK_ST(ps_options_set_compression_thresholds(o, 512, 65536, 3), PS_OK);
    CHECK_ST(ps_options_set_compression_thresholds(o, 65536, 512, 3), PS_ERR_INVALID_ARGUMENT);
    CHECK_ST(ps_options_set_compression_thresholds(o, 1, 2, 99), PS_ERR_INVALID_ARGUMENT);
    uint64_t th[2] = {1 << 10, 1 << 20};
    CHECK_ST(ps_options_set_memory_warnings(o, th, 2), PS_OK);
    CHECK_ST(ps_options_set_memory_warnings(o, NULL, 2), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_options_set_memory_warnings(o, NULL, 0), PS_OK);
    CHECK_ST(ps_options_set_auto_checkpoint(o, 0), PS_OK);
    CHECK_ST(ps_options_set_auto_checkpoint(NULL, 0), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_options_set_rebuild_memory(o, 1 << 20), PS_OK);
    CHECK_ST(ps_options_set_rebuild_memory(NULL, 1 << 20), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_options_set_prefault(o, 0), PS_OK);
    CHECK_ST(ps_options_set_prefault(NULL, 1), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_options_set_huge_reads_max(o, 0), PS_OK);
    CHECK_ST(ps_options_set_huge_reads_max(NULL, 0), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_options_set_expected_payloads(o, 1000), PS_OK);
    CHECK_ST(ps_options_set_expected_payloads(NULL, 1000), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_options_set_index_growth_thread(o, 0), PS_OK);
    CHECK_ST(ps_options_set_index_growth_thread(NULL, 1), PS_ERR_NULL_ARGUMENT);
    ps_options_free(o);
}

static void test_open_errors(const char *dir) {
    ps_store *s = (ps_store *)0x1; /* must stay untouched on failure */
    CHECK_ST(ps_store_open(NULL, NULL, &s), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_store_open(dir, NULL, NULL), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_store_open("", NULL, &s), PS_ERR_INVALID_ARGUMENT);
    CHECK(s == (ps_store *)0x1);
    /* DiskHash backend: write, reopen with the HashMap backend (the index is
       rebuilt from the log), then with DiskHash again */
    char dh[512];
    snprintf(dh, sizeof dh, "%s/diskhash", dir);
    ps_options *o = ps_options_new();
    CHECK_ST(ps_options_set_index_backend(o, PS_INDEX_DISKHASH), PS_OK);
    CHECK_ST(ps_options_set_rebuild_memory(o, 4096), PS_OK);
    CHECK_ST(ps_options_set_prefault(o, 0), PS_OK);
    CHECK_ST(ps_options_set_huge_reads_max(o, 0), PS_OK); /* rounds 0 and 2: 4 KiB reads; 1: default */
    for (int round = 0; round < 3; round++) {
        if (round == 2) { /* lose index.dh: rebuilt from the log, in passes (tiny budget) */
            char idx[600];
            snprintf(idx, sizeof idx, "%s/index.dh", dh);
            CHECK(remove(idx) == 0);
        }
        ps_store *d = NULL;
        CHECK_ST(ps_store_open(dh, round == 1 ? NULL : o, &d), PS_OK);
        for (uint64_t i = 0; i < 1000; i++) {
            ps_edge_id id = {7, i};
            uint64_t v = i * 3 + 1;
            if (round == 0) CHECK_ST(ps_store_append(d, id, (const uint8_t *)&v, sizeof v, PS_COMPRESSION_AUTO, NULL), PS_OK);
            ps_buf b = {NULL, 0};
            CHECK_ST(ps_store_get(d, id, &b), PS_OK);
            CHECK(b.len == sizeof v && memcmp(b.data, &v, sizeof v) == 0);
            ps_buf_free(&b);
        }
        ps_edge_id absent = {8, 0};
        ps_buf nb = {NULL, 0};
        CHECK_ST(ps_store_get(d, absent, &nb), PS_NOT_FOUND);
        CHECK_ST(ps_store_close(d), PS_OK);
    }
    ps_options_free(o);
    /* a file where a directory should be */
    char path[512];
    snprintf(path, sizeof path, "%s/afile", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("x", f);
    fclose(f);
    CHECK_ST(ps_store_open(path, NULL, &s), PS_ERR_IO);
    /* a directory that holds something else */
    char junk[512];
    snprintf(junk, sizeof junk, "%s/junk", dir);
    CHECK(mkdir(junk, 0755) == 0);
    snprintf(path, sizeof path, "%s/junk/payload.data", dir);
    f = fopen(path, "w");
    CHECK(f != NULL);
    for (int i = 0; i < 300; i++) fputc('z', f);
    fclose(f);
    CHECK_ST(ps_store_open(junk, NULL, &s), PS_ERR_NOT_A_STORE);
    /* read-only open of nothing */
    snprintf(path, sizeof path, "%s/nothing", dir);
    o = ps_options_new();
    ps_options_set_read_only(o, true);
    ps_status st = ps_store_open(path, o, &s);
    CHECK(st == PS_ERR_IO || st == PS_ERR_NOT_A_STORE);
    ps_options_free(o);
    /* wrong handle types are caught */
    ps_options *opts = ps_options_new();
    CHECK_ST(ps_store_sync((ps_store *)(void *)opts), PS_ERR_INVALID_HANDLE);
    CHECK(ps_store_len((const ps_store *)(void *)opts) == 0);
    ps_options_free(opts);
}

static void test_store(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/store", dir);
    ps_options *o = ps_options_new();
    CHECK_ST(ps_options_set_log_callback(o, on_log, &log_calls), PS_OK);
    uint64_t th[1] = {1};
    CHECK_ST(ps_options_set_memory_warnings(o, th, 1), PS_OK);
    ps_store *s = NULL;
    CHECK_ST(ps_store_open(path, o, &s), PS_OK);
    ps_options_free(o); /* the store keeps its own copy */
    CHECK(s != NULL);
    CHECK(log_calls >= 1); /* memory warning at threshold 1 byte */

    /* a second handle is locked out */
    ps_store *s2 = NULL;
    CHECK_ST(ps_store_open(path, NULL, &s2), PS_ERR_LOCKED);
    CHECK(s2 == NULL);

    /* append: sizes across every compression choice */
    static const size_t sizes[] = {0, 1, 1023, 1024, 100 * 1024, 100 * 1024 + 1, 1 << 20};
    static const int32_t comps[] = {PS_COMPRESSION_AUTO, PS_COMPRESSION_NONE, PS_COMPRESSION_LZ4, PS_COMPRESSION_ZSTD};
    enum { NS = sizeof sizes / sizeof sizes[0], NC = sizeof comps / sizeof comps[0] };
    ps_location locs[NS * NC];
    unsigned char *buf = malloc(1 << 20);
    CHECK(buf != NULL);
    for (size_t c = 0; c < NC; c++) {
        for (size_t i = 0; i < NS; i++) {
            ps_edge_id id = {c + 1, i};
            fill_payload(buf, sizes[i], c * 100 + i);
            CHECK_ST(ps_store_append(s, id, sizes[i] ? buf : NULL, sizes[i], comps[c], &locs[c * NS + i]), PS_OK);
            if (comps[c] == PS_COMPRESSION_NONE) CHECK(locs[c * NS + i].length == sizes[i]);
        }
    }
    CHECK(ps_store_len(s) == NS * NC);
    ps_edge_id some = {1, 3};
    CHECK_ST(ps_store_append(s, some, buf, 10, PS_COMPRESSION_AUTO, NULL), PS_OK); /* out_loc may be NULL */
    fill_payload(buf, 1024, 3);
    CHECK_ST(ps_store_append(s, some, buf, 1024, PS_COMPRESSION_AUTO, NULL), PS_OK); /* back to the original */

    /* append errors: nothing is stored */
    ps_edge_id e = {99, 99};
    ps_location untouched = {7, 7, 7};
    CHECK_ST(ps_store_append(NULL, e, buf, 1, PS_COMPRESSION_AUTO, NULL), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_store_append(s, e, NULL, 5, PS_COMPRESSION_AUTO, &untouched), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_store_append(s, e, buf, 5, 3, &untouched), PS_ERR_INVALID_COMPRESSION);
    CHECK_ST(ps_store_append(s, e, buf, 5, -2, &untouched), PS_ERR_INVALID_COMPRESSION);
    CHECK_ST(ps_store_append(s, e, buf, (size_t)1 << 31, PS_COMPRESSION_NONE, &untouched), PS_ERR_PAYLOAD_TOO_LARGE);
    CHECK_ST(ps_store_append(s, e, buf, SIZE_MAX, PS_COMPRESSION_NONE, &untouched), PS_ERR_INVALID_ARGUMENT);
    CHECK(untouched.offset == 7 && untouched.length == 7 && untouched.compression == 7);
    CHECK(!ps_store_contains(s, e));

    /* get, get_into, get_at for everything */
    unsigned char *want = malloc(1 << 20);
    CHECK(want != NULL);
    for (size_t c = 0; c < NC; c++) {
        for (size_t i = 0; i < NS; i++) {
            ps_edge_id id = {c + 1, i};
            fill_payload(want, sizes[i], c * 100 + i);
            ps_buf b = {NULL, 0};
            CHECK_ST(ps_store_get(s, id, &b), PS_OK);
            CHECK(b.len == sizes[i]);
            CHECK(sizes[i] == 0 ? b.data == NULL : memcmp(b.data, want, sizes[i]) == 0);
            ps_buf_free(&b);
            CHECK(b.data == NULL && b.len == 0);
            ps_buf_free(&b); /* twice is fine: it was emptied */

            size_t n = 0;
            CHECK_ST(ps_store_get_into(s, id, buf, 1 << 20, &n), PS_OK);
            CHECK(n == sizes[i] && memcmp(buf, want, n) == 0);
            if (sizes[i] > 0) {
                n = 0;
                CHECK_ST(ps_store_get_into(s, id, buf, sizes[i] - 1, &n), PS_ERR_BUFFER_TOO_SMALL);
                CHECK(n == sizes[i]);
                CHECK_ST(ps_store_get_into(s, id, NULL, 0, &n), PS_ERR_BUFFER_TOO_SMALL);
                CHECK(n == sizes[i]);
            }
            CHECK_ST(ps_store_get_at(s, locs[c * NS + i], &b), PS_OK);
            CHECK(b.len == sizes[i] && (sizes[i] == 0 || memcmp(b.data, want, sizes[i]) == 0));
            ps_buf_free(&b);
            CHECK(ps_store_contains(s, id));
        }
    }
    ps_buf_free(NULL);

    /* get_many: every id of channel 1, an absent one in the middle, one twice */
    {
        enum { M = NS + 2 };
        ps_edge_id ids[M];
        for (size_t i = 0; i < NS; i++) ids[i] = (ps_edge_id){1, i};
        ids[NS] = e;                     /* absent */
        ids[NS + 1] = (ps_edge_id){1, 1}; /* again */
        ps_buf bufs[M];
        ps_status st[M];
        CHECK_ST(ps_store_get_many(s, ids, M, bufs, st), PS_OK);
        for (size_t i = 0; i < M; i++) {
            if (i == NS) {
                CHECK_ST(st[i], PS_NOT_FOUND);
                CHECK(bufs[i].data == NULL && bufs[i].len == 0);
                continue;
            }
            size_t k = i == NS + 1 ? 1 : i;
            fill_payload(want, sizes[k], 0 * 100 + k);
            CHECK_ST(st[i], PS_OK);
            CHECK(bufs[i].len == sizes[k] && (sizes[k] == 0 || memcmp(bufs[i].data, want, sizes[k]) == 0));
            ps_buf_free(&bufs[i]);
        }
        CHECK_ST(ps_store_get_many(s, NULL, 0, NULL, NULL), PS_OK);
        CHECK_ST(ps_store_get_many(s, NULL, 2, bufs, st), PS_ERR_NULL_ARGUMENT);
        CHECK_ST(ps_store_get_many(s, ids, 2, NULL, st), PS_ERR_NULL_ARGUMENT);
        CHECK_ST(ps_store_get_many(s, ids, 2, bufs, NULL), PS_ERR_NULL_ARGUMENT);
        CHECK_ST(ps_store_get_many(NULL, ids, 2, bufs, st), PS_ERR_NULL_ARGUMENT);
    }

    /* not found */
    ps_buf nb = {(uint8_t *)0x1, 99};
    CHECK_ST(ps_store_get(s, e, &nb), PS_NOT_FOUND);
    CHECK(nb.data == (uint8_t *)0x1 && nb.len == 99); /* untouched */
    size_t n = 5;
    CHECK_ST(ps_store_get_into(s, e, buf, 10, &n), PS_NOT_FOUND);

    /* get errors */
    ps_buf b = {NULL, 0};
    CHECK_ST(ps_store_get(NULL, some, &b), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_store_get(s, some, NULL), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_store_get_into(s, some, NULL, 10, &n), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_store_get_into(s, some, buf, 10, NULL), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_store_get_into(NULL, some, buf, 10, &n), PS_ERR_NULL_ARGUMENT);
    CHECK(!ps_store_contains(NULL, some));
    CHECK(ps_store_len(NULL) == 0);

    /* invalid locations: an error every time, never bytes */
    for (size_t k = 0; k < NS * NC; k++) {
        ps_location l = locs[k];
        ps_location bad[6] = {l, l, l, l, l, l};
        bad[0].offset += 1;
        bad[1].offset -= 1;
        bad[2].length += 1;
        bad[3].compression = (uint8_t)((l.compression + 1) % 3);
        bad[4].compression = 9;
        bad[5].offset = UINT64_MAX - 3;
        for (int j = 0; j < 6; j++) {
            CHECK_ST(ps_store_get_at(s, bad[j], &b), PS_ERR_INVALID_LOCATION);
            CHECK(b.data == NULL);
        }
    }
    ps_location zero = {0, 0, 0};
    CHECK_ST(ps_store_get_at(s, zero, &b), PS_ERR_INVALID_LOCATION);
    CHECK_ST(ps_store_get_at(s, locs[0], NULL), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_store_get_at(NULL, locs[0], &b), PS_ERR_NULL_ARGUMENT);

    /* append_batch */
    {
        ps_edge_id bids[3] = {{7, 1}, {7, 2}, {7, 1}};
        const uint8_t *bdatas[3] = {(const uint8_t *)"first", (const uint8_t *)"second", (const uint8_t *)"third"};
        size_t blens[3] = {5, 6, 5};
        ps_location blocs[3];
        CHECK_ST(ps_store_append_batch(s, bids, bdatas, blens, 3, PS_COMPRESSION_AUTO, blocs), PS_OK);
        CHECK_ST(ps_store_get(s, bids[0], &b), PS_OK); /* the later duplicate wins */
        CHECK(b.len == 5 && memcmp(b.data, "third", 5) == 0);
        ps_buf_free(&b);
        CHECK_ST(ps_store_get_at(s, blocs[1], &b), PS_OK);
        CHECK(b.len == 6 && memcmp(b.data, "second", 6) == 0);
        ps_buf_free(&b);
        CHECK_ST(ps_store_append_batch(s, bids, bdatas, blens, 0, PS_COMPRESSION_AUTO, NULL), PS_OK);
        CHECK_ST(ps_store_append_batch(s, NULL, bdatas, blens, 3, PS_COMPRESSION_AUTO, NULL), PS_ERR_NULL_ARGUMENT);
        CHECK_ST(ps_store_append_batch(s, bids, NULL, blens, 3, PS_COMPRESSION_AUTO, NULL), PS_ERR_NULL_ARGUMENT);
        CHECK_ST(ps_store_append_batch(s, bids, bdatas, NULL, 3, PS_COMPRESSION_AUTO, NULL), PS_ERR_NULL_ARGUMENT);
        CHECK_ST(ps_store_append_batch(s, bids, bdatas, blens, 3, 9, NULL), PS_ERR_INVALID_COMPRESSION);
        CHECK_ST(ps_store_append_batch(NULL, bids, bdatas, blens, 3, PS_COMPRESSION_AUTO, NULL), PS_ERR_NULL_ARGUMENT);
        const uint8_t *withnull[2] = {(const uint8_t *)"x", NULL};
        size_t nlens[2] = {1, 4};
        ps_edge_id nids[2] = {{8, 1}, {8, 2}};
        CHECK_ST(ps_store_append_batch(s, nids, withnull, nlens, 2, PS_COMPRESSION_AUTO, NULL), PS_ERR_NULL_ARGUMENT);
        CHECK(!ps_store_contains(s, nids[0])); /* nothing of a failed batch is stored */
        bool ex = false;
        CHECK_ST(ps_store_delete(s, bids[0], &ex), PS_OK);
        CHECK_ST(ps_store_delete(s, bids[1], &ex), PS_OK);
        CHECK(ex);
    }

    /* delete */
    bool existed = false;
    ps_edge_id del = {1, 0};
    CHECK_ST(ps_store_delete(s, del, &existed), PS_OK);
    CHECK(existed);
    CHECK_ST(ps_store_delete(s, del, &existed), PS_OK);
    CHECK(!existed);
    CHECK_ST(ps_store_delete(s, del, NULL), PS_OK);
    CHECK_ST(ps_store_delete(NULL, del, NULL), PS_ERR_NULL_ARGUMENT);
    CHECK(!ps_store_contains(s, del));

    /* sync, save_index, stats */
    CHECK_ST(ps_store_sync(s), PS_OK);
    CHECK_ST(ps_store_sync(NULL), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_store_save_index(s), PS_OK);
    CHECK_ST(ps_store_save_index(NULL), PS_ERR_NULL_ARGUMENT);
    ps_stats st;
    CHECK_ST(ps_store_stats(s, &st), PS_OK);
    CHECK(st.payloads == NS * NC - 1);
    CHECK(st.count_by_compression[0] + st.count_by_compression[1] + st.count_by_compression[2] == st.payloads);
    CHECK(st.compression_ratio > 1.0);
    CHECK(st.durable_offset == st.file_bytes);
    CHECK(st.last_checkpoint_offset == st.file_bytes);
    CHECK(st.index_memory_bytes > 0);
    CHECK(st.backend == PS_INDEX_HASHMAP);
    CHECK(st.recovery_source == PS_RECOVERY_CREATED);
    CHECK(ps_store_durable_offset(s) == st.durable_offset);
    CHECK_ST(ps_store_stats(s, NULL), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_store_stats(NULL, &st), PS_ERR_NULL_ARGUMENT);

    /* scrub: a clean store */
    ps_verify_report vr;
    CHECK_ST(ps_store_verify(s, &vr), PS_OK);
    CHECK(vr.index_entries == NS * NC - 1);
    CHECK(vr.records > vr.index_entries); /* the tombstone, the replaced payloads */
    CHECK(vr.bytes > 0 && vr.bytes < st.file_bytes);
    CHECK(vr.damaged_regions == 0 && vr.damaged_bytes == 0 && vr.first_damaged_offset == 0);
    CHECK(vr.index_errors == 0 && vr.first_index_error_offset == 0);
    CHECK_ST(ps_store_verify(s, NULL), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_store_verify(NULL, &vr), PS_ERR_NULL_ARGUMENT);

    /* iteration */
    ps_iter *it = NULL;
    CHECK_ST(ps_store_iter(s, &it), PS_OK);
    size_t count = 0;
    ps_edge_id iid;
    ps_location iloc;
    while (ps_iter_next(it, &iid, &iloc) == PS_OK) {
        CHECK(ps_store_contains(s, iid));
        CHECK_ST(ps_store_get_at(s, iloc, &b), PS_OK);
        ps_buf_free(&b);
        count++;
    }
    CHECK(count == NS * NC - 1);
    CHECK_ST(ps_iter_next(it, NULL, NULL), PS_NOT_FOUND);
    ps_iter_free(it);
    ps_iter_free(NULL);
    CHECK_ST(ps_store_iter(s, NULL), PS_ERR_NULL_ARGUMENT);
    CHECK_ST(ps_iter_next(NULL, &iid, &iloc), PS_ERR_NULL_ARGUMENT);

    /* compaction: the replaced payloads and the deleted one are dropped;
       the reopen below checks every live payload in the new log */
    {
        ps_compact_report cr;
        CHECK_ST(ps_store_stats(s, &st), PS_OK);
        CHECK(st.dead_bytes > 0);
        uint64_t live_bytes = st.live_bytes;
        CHECK_ST(ps_store_compact(s, &cr), PS_OK);
        CHECK(cr.payloads == NS * NC - 1);
        CHECK(cr.generation == 1);
        CHECK(cr.bytes_before == st.file_bytes);
        CHECK(cr.bytes_after == 128 + live_bytes && cr.bytes_after < cr.bytes_before);
        CHECK_ST(ps_store_stats(s, &st), PS_OK);
        CHECK(st.dead_bytes == 0 && st.file_bytes == cr.bytes_after);
        CHECK_ST(ps_store_compact(s, NULL), PS_OK); /* nothing left to drop */
        CHECK_ST(ps_store_compact(NULL, &cr), PS_ERR_NULL_ARGUMENT);
        ps_edge_id gone = {1, 0};
        CHECK(!ps_store_contains(s, gone));
    }

    /* close and reopen: everything is still there, from the checkpoint */
    CHECK_ST(ps_store_close(s), PS_OK);
    CHECK_ST(ps_store_close(NULL), PS_OK);
    CHECK_ST(ps_store_open(path, NULL, &s), PS_OK);
    CHECK_ST(ps_store_stats(s, &st), PS_OK);
    CHECK(st.recovery_source == PS_RECOVERY_CHECKPOINT);
    CHECK(ps_store_len(s) == NS * NC - 1);
    for (size_t c = 0; c < NC; c++) {
        for (size_t i = 0; i < NS; i++) {
            ps_edge_id id = {c + 1, i};
            if (c == 0 && i == 0) {
                CHECK_ST(ps_store_get(s, id, &b), PS_NOT_FOUND);
                continue;
            }
            fill_payload(want, sizes[i], c * 100 + i);
            CHECK_ST(ps_store_get(s, id, &b), PS_OK);
            CHECK(b.len == sizes[i] && (sizes[i] == 0 || memcmp(b.data, want, sizes[i]) == 0));
            ps_buf_free(&b);
        }
    }
    CHECK_ST(ps_store_close(s), PS_OK);

    /* read-only handles */
    o = ps_options_new();
    ps_options_set_read_only(o, true);
    ps_store *r1 = NULL, *r2 = NULL;
    CHECK_ST(ps_store_open(path, o, &r1), PS_OK);
    CHECK_ST(ps_store_open(path, o, &r2), PS_OK);
    CHECK_ST(ps_store_append(r1, e, buf, 3, PS_COMPRESSION_AUTO, NULL), PS_ERR_READ_ONLY);
    CHECK_ST(ps_store_save_index(r1), PS_ERR_READ_ONLY);
    CHECK_ST(ps_store_compact(r1, NULL), PS_ERR_READ_ONLY);
    CHECK(ps_store_len(r2) == NS * NC - 1);
    CHECK_ST(ps_store_open(path, NULL, &s), PS_ERR_LOCKED);
    CHECK_ST(ps_store_close(r1), PS_OK);
    CHECK_ST(ps_store_close(r2), PS_OK);
    ps_options_free(o);
    free(buf);
    free(want);
}

/* expected_payloads sizes the RAM index at open; loading that many leaves
   it the same size (no rebuild), and the data reads back */
static void test_expected_payloads(const char *dir) {
    char sub[512];
    snprintf(sub, sizeof sub, "%s/expected", dir);
    ps_options *o = ps_options_new();
    ps_store *s = NULL;
    CHECK_ST(ps_options_set_expected_payloads(o, UINT64_MAX), PS_OK);
    CHECK_ST(ps_store_open(sub, o, &s), PS_ERR_INVALID_ARGUMENT); /* more RAM than there is */
    CHECK(s == NULL);
    CHECK_ST(ps_options_set_expected_payloads(o, 20000), PS_OK);
    CHECK_ST(ps_store_open(sub, o, &s), PS_OK);
    ps_options_free(o);
    ps_stats st;
    CHECK_ST(ps_store_stats(s, &st), PS_OK);
    uint64_t sized = st.index_memory_bytes;
    CHECK(sized >= 20000 * 18); /* 10 B per slot at 53 % */
    for (uint64_t i = 0; i < 20000; i++) {
        ps_edge_id id = {11, i};
        CHECK_ST(ps_store_append(s, id, (const uint8_t *)&i, sizeof i, PS_COMPRESSION_AUTO, NULL), PS_OK);
    }
    CHECK_ST(ps_store_stats(s, &st), PS_OK);
    CHECK(st.index_memory_bytes == sized);
    ps_edge_id id = {11, 12345};
    ps_buf b = {NULL, 0};
    CHECK_ST(ps_store_get(s, id, &b), PS_OK);
    CHECK(b.len == 8 && *(const uint64_t *)b.data == 12345);
    ps_buf_free(&b);
    CHECK_ST(ps_store_close(s), PS_OK);
}

int main(void) {
    char *dir = make_temp_dir("capi");
    test_versions_and_statuses();
    test_options();
    test_open_errors(dir);
    test_store(dir);
    test_expected_payloads(dir);
    remove_dir(dir);
    free(dir);
    printf("test_api: all checks passed\n");
    return 0;
}
