// C++ example with the RAII wrapper include/payload_store.hpp; exits non-zero
// if anything reads back wrong (it is part of the test suite).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "payload_store.hpp"

int main() {
    char tmpl[] = "/tmp/ps-cpp-XXXXXX";
    const char *dir = mkdtemp(tmpl);
    if (!dir) return 1;
    {
        payload_store::Store store(dir);
        std::string text(5000, 'a');
        for (int i = 0; i < 1000; i++) {
            text[static_cast<size_t>(i)] = static_cast<char>('a' + i % 26);
            store.append({0, static_cast<uint64_t>(i)}, text);
        }
        std::vector<uint8_t> out;
        if (!store.get({0, 999}, out) || std::string(out.begin(), out.end()) != text) return 1;
        if (store.get({1, 1}, out)) return 1;
        std::vector<std::vector<uint8_t>> many;
        std::vector<bool> found = store.get_many({{0, 999}, {1, 1}, {0, 999}}, many);
        if (found.size() != 3 || !found[0] || found[1] || !found[2]) return 1;
        if (std::string(many[2].begin(), many[2].end()) != text || !many[1].empty()) return 1;
        try {
            store.get_at({7, 100, 0});
            return 1;  // must have thrown
        } catch (const payload_store::Error &e) {
            if (e.status() != PS_ERR_INVALID_LOCATION) return 1;
            std::printf("invalid location -> %s (%d)\n", e.what(), e.status());
        }
        try {
            payload_store::Store second(dir);
            return 1;
        } catch (const payload_store::Error &e) {
            if (e.status() != PS_ERR_LOCKED) return 1;
        }
        ps_stats s = store.stats();
        std::printf("C++: %llu payloads, compression ratio %.1f\n", static_cast<unsigned long long>(s.payloads), s.compression_ratio);
        ps_verify_report v = store.verify();
        if (v.index_entries != s.payloads || v.damaged_regions != 0 || v.index_errors != 0) return 1;
        std::printf("C++: verify: %llu records intact, no damage\n", static_cast<unsigned long long>(v.records));
        // replace half the payloads, then drop the replaced records
        for (int i = 0; i < 500; i++) store.append({0, static_cast<uint64_t>(i)}, std::string(100, 'r'));
        ps_compact_report c = store.compact();
        if (c.payloads != 1000 || c.bytes_after >= c.bytes_before) return 1;
        if (!store.get({0, 7}, out) || std::string(out.begin(), out.end()) != std::string(100, 'r')) return 1;
        if (!store.get({0, 999}, out) || std::string(out.begin(), out.end()) != text) return 1;
        std::printf("C++: compact: %llu -> %llu log bytes\n", static_cast<unsigned long long>(c.bytes_before),
                    static_cast<unsigned long long>(c.bytes_after));
        store.close();
    }
    payload_store::Options ro;
    ro.read_only(true);
    {
        payload_store::Store again(dir, &ro);
        if (again.size() != 1000) return 1;
    }
    {
        // the same store with the on-disk index (built from the log here)
        payload_store::Options dh;
        dh.index_backend(PS_INDEX_DISKHASH);
        payload_store::Store disk(dir, &dh);
        if (disk.size() != 1000) return 1;
        ps_stats s = disk.stats();
        std::printf("C++: DiskHash index file %llu bytes, index RAM %llu bytes\n",
                    static_cast<unsigned long long>(s.index_file_bytes),
                    static_cast<unsigned long long>(s.index_memory_bytes));
        disk.close();
    }
    std::string cmd = std::string("rm -rf '") + dir + "'";
    if (std::system(cmd.c_str()) != 0) return 1;
    std::printf("C++ example: OK\n");
    return 0;
}
