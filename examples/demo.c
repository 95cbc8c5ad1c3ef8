/* The main demo: open a store in a temporary directory, append a mix of
 * small, medium and large payloads, read every one back and check it, delete
 * some and compact, close, reopen, and print what happened. Build and run: bash examples/run-demo.sh */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "payload_store.h"

#define DIE(st, what) do { fprintf(stderr, "%s failed: %s\n", what, ps_status_str(st)); exit(1); } while (0)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Text-like, compressible payload bytes derived from (i, len). */
static void fill(unsigned char *p, size_t len, uint64_t i) {
    static const char *words[] = {"agent ", "called ", "tool ", "search ", "with ", "query ", "\"edge\": ",
                                  "{\"span\": ", "latency_ms ", "42, ", "result ", "ok ", "retry ", "token "};
    uint64_t x = i * 0x9E3779B97F4A7C15ULL + len;
    size_t k = 0;
    while (k < len) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        if (x % 9 == 0) { p[k++] = (unsigned char)(x >> 24); continue; }
        const char *w = words[x % 14];
        while (*w && k < len) p[k++] = (unsigned char)*w++;
    }
}

static void on_log(void *user, int32_t level, const char *msg) {
    (void)user;
    printf("  [store log, level %d] %s\n", level, msg);
}

int main(int argc, char **argv) {
    char tmpl[] = "/tmp/payload-store-demo-XXXXXX";
    const char *dir = argc > 1 ? argv[1] : mkdtemp(tmpl);
    if (!dir) { perror("mkdtemp"); return 1; }
    printf("payload_store %s - C demo in %s\n", ps_version_string(), dir);

    ps_options *opts = ps_options_new();
    ps_options_set_log_callback(opts, on_log, NULL);
    ps_store *store = NULL;
    ps_status st = ps_store_open(dir, opts, &store);
    ps_options_free(opts);
    if (st != PS_OK) DIE(st, "ps_store_open");

    /* 20000 small (< 1 KiB), 2000 medium (1-100 KiB), 40 large (100 KiB - 2 MiB) */
    const struct { const char *name; uint64_t count; size_t min, max; } kinds[3] = {
        {"small  (<1 KiB, stored raw)", 20000, 40, 1023},
        {"medium (1-100 KiB, LZ4)", 2000, 1024, 100 * 1024},
        {"large  (>100 KiB, ZSTD)", 40, 100 * 1024 + 1, 2 << 20},
    };
    unsigned char *buf = malloc(2 << 20), *got = malloc(2 << 20);
    if (!buf || !got) return 1;
    uint64_t raw_by[3] = {0}, stored_by[3] = {0}, total = 0, id = 0;
    double t0 = now();
    for (int k = 0; k < 3; k++) {
        for (uint64_t i = 0; i < kinds[k].count; i++, id++) {
            size_t len = kinds[k].min + (size_t)((id * 7919) % (kinds[k].max - kinds[k].min + 1));
            fill(buf, len, id);
            ps_location loc;
            ps_edge_id eid = {(uint64_t)k, id};
            st = ps_store_append(store, eid, buf, len, PS_COMPRESSION_AUTO, &loc);
            if (st != PS_OK) DIE(st, "ps_store_append");
            raw_by[k] += len;
            stored_by[k] += loc.length;
            total += len;
        }
    }
    if ((st = ps_store_sync(store)) != PS_OK) DIE(st, "ps_store_sync");
    double t1 = now();
    printf("appended %llu payloads, %.1f MiB, in %.3f s (%.0f MB/s, %.0f appends/s), then synced\n",
           (unsigned long long)id, total / 1048576.0, t1 - t0, total / 1e6 / (t1 - t0), id / (t1 - t0));
    for (int k = 0; k < 3; k++)
        printf("  %-30s %6llu payloads, %8.1f KiB raw -> %8.1f KiB stored, ratio %.2f\n", kinds[k].name,
               (unsigned long long)kinds[k].count, raw_by[k] / 1024.0, stored_by[k] / 1024.0,
               (double)raw_by[k] / (double)stored_by[k]);

    /* read everything back, twice: once into a library buffer, once into ours */
    id = 0;
    uint64_t checked = 0;
    t0 = now();
    for (int k = 0; k < 3; k++) {
        for (uint64_t i = 0; i < kinds[k].count; i++, id++) {
            size_t len = kinds[k].min + (size_t)((id * 7919) % (kinds[k].max - kinds[k].min + 1));
            fill(buf, len, id);
            ps_edge_id eid = {(uint64_t)k, id};
            ps_buf b = {NULL, 0};
            if ((st = ps_store_get(store, eid, &b)) != PS_OK) DIE(st, "ps_store_get");
            if (b.len != len || memcmp(b.data, buf, len) != 0) { fprintf(stderr, "MISMATCH at id %llu\n", (unsigned long long)id); return 1; }
            ps_buf_free(&b);
            size_t n = 0;
            if ((st = ps_store_get_into(store, eid, got, 2 << 20, &n)) != PS_OK) DIE(st, "ps_store_get_into");
            if (n != len || memcmp(got, buf, len) != 0) { fprintf(stderr, "MISMATCH at id %llu\n", (unsigned long long)id); return 1; }
            checked++;
        }
    }
    t1 = now();
    printf("read back and verified %llu payloads twice in %.3f s (%.0f verified gets/s)\n",
           (unsigned long long)checked, t1 - t0, 2.0 * checked / (t1 - t0));
    ps_edge_id missing = {9, 9};
    ps_buf b = {NULL, 0};
    printf("an id never written: %s\n", ps_status_str(ps_store_get(store, missing, &b)));
    ps_location bogus = {12345, 100, PS_COMPRESSION_NONE};
    printf("a made-up location: %s\n", ps_status_str(ps_store_get_at(store, bogus, &b)));

    /* delete the last tenth of each kind, then compact: the log keeps only what is live */
    {
        uint64_t end = 0, deleted = 0;
        for (int k = 0; k < 3; k++) {
            end += kinds[k].count;
            for (uint64_t i = 1; i <= kinds[k].count / 10; i++, deleted++) {
                ps_edge_id eid = {(uint64_t)k, end - i};
                if ((st = ps_store_delete(store, eid, NULL)) != PS_OK) DIE(st, "ps_store_delete");
            }
        }
        ps_compact_report cr;
        if ((st = ps_store_compact(store, &cr)) != PS_OK) DIE(st, "ps_store_compact");
        printf("deleted %llu payloads, compacted: %llu live, log %.1f -> %.1f MiB in %.0f ms\n",
               (unsigned long long)deleted, (unsigned long long)cr.payloads, cr.bytes_before / 1048576.0,
               cr.bytes_after / 1048576.0, cr.micros / 1e3);
    }

    ps_stats s;
    ps_store_stats(store, &s);
    printf("stats: %llu payloads, %.1f MiB in the log, overall ratio %.2f, index RAM %llu bytes (%.1f B/payload)\n",
           (unsigned long long)s.payloads, s.file_bytes / 1048576.0, s.compression_ratio,
           (unsigned long long)s.index_memory_bytes, s.index_bytes_per_payload);
    if ((st = ps_store_close(store)) != PS_OK) DIE(st, "ps_store_close");

    t0 = now();
    if ((st = ps_store_open(dir, NULL, &store)) != PS_OK) DIE(st, "reopen");
    t1 = now();
    ps_store_stats(store, &s);
    printf("reopened in %.1f ms (index from %s, %llu records replayed): %llu payloads\n", (t1 - t0) * 1e3,
           s.recovery_source == PS_RECOVERY_CHECKPOINT ? "checkpoint" : "log scan",
           (unsigned long long)s.recovery_replayed_records, (unsigned long long)ps_store_len(store));
    ps_store_close(store);

    /* the same store with the on-disk index (built from the log at the first open) */
    ps_options *o = ps_options_new();
    if ((st = ps_options_set_index_backend(o, PS_INDEX_DISKHASH)) != PS_OK) DIE(st, "set backend");
    for (int round = 0; round < 2; round++) {
        t0 = now();
        if ((st = ps_store_open(dir, o, &store)) != PS_OK) DIE(st, "open DiskHash");
        t1 = now();
        ps_store_stats(store, &s);
        printf("DiskHash open %d: %.2f ms (%s), %llu payloads, index file %.1f MiB, index RAM %llu bytes\n", round + 1,
               (t1 - t0) * 1e3, s.recovery_source == PS_RECOVERY_CHECKPOINT ? "index.dh mapped" : "index.dh built from the log",
               (unsigned long long)ps_store_len(store), s.index_file_bytes / 1048576.0,
               (unsigned long long)s.index_memory_bytes);
        ps_edge_id first = {0, 0};
        if ((st = ps_store_get(store, first, &b)) != PS_OK) DIE(st, "get via DiskHash");
        ps_buf_free(&b);
        if ((st = ps_store_close(store)) != PS_OK) DIE(st, "close DiskHash");
    }
    ps_options_free(o);
    free(buf);
    free(got);
    if (argc <= 1) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) return 1;
    }
    printf("C demo: OK\n");
    return 0;
}
