// Header-only C++11 RAII wrapper over payload_store.h.
//
//   payload_store::Store s("/tmp/dir");            // throws payload_store::Error
//   auto loc = s.append({0, 1}, bytes);             // std::vector<uint8_t> / std::string
//   std::vector<uint8_t> out;
//   bool found = s.get({0, 1}, out);
//
// Store is movable, not copyable, and thread-safe like ps_store.
#ifndef PAYLOAD_STORE_HPP
#define PAYLOAD_STORE_HPP

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "payload_store.h"

namespace payload_store {

/// A failed call: the status code and its text.
class Error : public std::runtime_error {
public:
    explicit Error(ps_status status) : std::runtime_error(ps_status_str(status)), status_(status) {}
    ps_status status() const noexcept { return status_; }

private:
    ps_status status_;
};

inline void check(ps_status st) {
    if (st != PS_OK) throw Error(st);
}

/// Owns ps_options.
class Options {
public:
    Options() : opts_(ps_options_new()) {
        if (!opts_) throw std::bad_alloc();
    }
    ~Options() { ps_options_free(opts_); }
    Options(const Options &) = delete;
    Options &operator=(const Options &) = delete;
    Options &sync_policy(int32_t policy) { check(ps_options_set_sync_policy(opts_, policy)); return *this; }
    Options &read_only(bool on) { check(ps_options_set_read_only(opts_, on)); return *this; }
    Options &repair(bool on) { check(ps_options_set_repair(opts_, on)); return *this; }
    Options &compression_enabled(bool on) { check(ps_options_set_compression_enabled(opts_, on)); return *this; }
    Options &index_backend(int32_t backend) { check(ps_options_set_index_backend(opts_, backend)); return *this; }
    Options &expected_payloads(uint64_t count) { check(ps_options_set_expected_payloads(opts_, count)); return *this; }
    Options &index_growth_thread(bool on) { check(ps_options_set_index_growth_thread(opts_, on)); return *this; }
    const ps_options *get() const noexcept { return opts_; }

private:
    ps_options *opts_;
};

/// Owns an open ps_store; closes it in the destructor (errors there are
/// swallowed: call close() to see them).
class Store {
public:
    explicit Store(const std::string &dir, const Options *opts = nullptr) {
        check(ps_store_open(dir.c_str(), opts ? opts->get() : nullptr, &store_));
    }
    ~Store() { ps_store_close(store_); }
    Store(Store &&o) noexcept : store_(o.store_) { o.store_ = nullptr; }
    Store &operator=(Store &&o) noexcept {
        if (this != &o) {
            ps_store_close(store_);
            store_ = o.store_;
            o.store_ = nullptr;
        }
        return *this;
    }
    Store(const Store &) = delete;
    Store &operator=(const Store &) = delete;

    ps_location append(ps_edge_id id, const void *data, size_t len, int32_t compression = PS_COMPRESSION_AUTO) {
        ps_location loc;
        check(ps_store_append(store_, id, static_cast<const uint8_t *>(data), len, compression, &loc));
        return loc;
    }
    template <class Bytes>
    ps_location append(ps_edge_id id, const Bytes &bytes, int32_t compression = PS_COMPRESSION_AUTO) {
        return append(id, bytes.data(), bytes.size(), compression);
    }
    /// Fills `out` and returns true, or returns false when the id is absent.
    bool get(ps_edge_id id, std::vector<uint8_t> &out) const {
        ps_buf b = {nullptr, 0};
        ps_status st = ps_store_get(store_, id, &b);
        if (st == PS_NOT_FOUND) return false;
        check(st);
        out.assign(b.data, b.data + b.len);
        ps_buf_free(&b);
        return true;
    }
    /// Looks up many ids at once (about twice the throughput of `get` per id
    /// on large stores). `out[i]` is the payload of `ids[i]`; the result says
    /// for each whether it was found. Throws on the first lookup error.
    std::vector<bool> get_many(const std::vector<ps_edge_id> &ids,
                               std::vector<std::vector<uint8_t>> &out) const {
        std::vector<ps_buf> bufs(ids.size(), ps_buf{nullptr, 0});
        std::vector<ps_status> sts(ids.size(), PS_OK);
        check(ps_store_get_many(store_, ids.data(), ids.size(), bufs.data(), sts.data()));
        std::vector<bool> found(ids.size(), false);
        out.assign(ids.size(), std::vector<uint8_t>());
        ps_status first_error = PS_OK;
        for (size_t i = 0; i < ids.size(); i++) {
            if (sts[i] == PS_OK) {
                out[i].assign(bufs[i].data, bufs[i].data + bufs[i].len);
                found[i] = true;
            } else if (sts[i] != PS_NOT_FOUND && first_error == PS_OK) {
                first_error = sts[i];
            }
            ps_buf_free(&bufs[i]);
        }
        check(first_error);
        return found;
    }
    std::vector<uint8_t> get_at(ps_location loc) const {
        ps_buf b = {nullptr, 0};
        check(ps_store_get_at(store_, loc, &b));
        std::vector<uint8_t> out(b.data, b.data + b.len);
        ps_buf_free(&b);
        return out;
    }
    bool remove(ps_edge_id id) {
        bool existed = false;
        check(ps_store_delete(store_, id, &existed));
        return existed;
    }
    bool contains(ps_edge_id id) const noexcept { return ps_store_contains(store_, id); }
    uint64_t size() const noexcept { return ps_store_len(store_); }
    void sync() { check(ps_store_sync(store_)); }
    void save_index() { check(ps_store_save_index(store_)); }
    ps_stats stats() const {
        ps_stats s;
        check(ps_store_stats(store_, &s));
        return s;
    }
    /// Scrubs the store (one pass over the log); damage is in the report.
    ps_verify_report verify() const {
        ps_verify_report r;
        check(ps_store_verify(store_, &r));
        return r;
    }
    /// Rewrites the log with only the live payloads while other threads
    /// read and append; earlier locations become invalid.
    ps_compact_report compact() {
        ps_compact_report r;
        check(ps_store_compact(store_, &r));
        return r;
    }
    /// Closes now and reports the error, if any.
    void close() {
        ps_store *s = store_;
        store_ = nullptr;
        check(ps_store_close(s));
    }

private:
    ps_store *store_ = nullptr;
};

}  // namespace payload_store

#endif  // PAYLOAD_STORE_HPP
