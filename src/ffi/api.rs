//! The `extern "C"` functions. Plain API logic: every pointer goes through
//! `boundary`, every body through its panic guard.

use super::boundary::{
    self, buf_from_vec, bytes, bytes_mut, guard, handle, handle_mut, into_handle, out_ptr, path,
    run, take_handle, write_out, Handle,
};
use super::ps_buf;
use super::status::*;
use crate::{
    CompressionType, IndexBackend, IndexSource, LogLevel, Options, PayloadStore, SyncPolicy,
};
use std::ffi::{c_char, c_void};
use std::sync::Arc;

/// Index backend: in-memory table (default).
pub const PS_INDEX_HASHMAP: i32 = 0;
/// Index backend: on-disk linear hash table (`index.dh`): fixed RAM, one page read
/// per cold lookup, for stores of tens of millions to billions of payloads.
pub const PS_INDEX_DISKHASH: i32 = 1;

/// Sync policy: only `ps_store_sync` (and close) make appends durable (default).
pub const PS_SYNC_MANUAL: i32 = 0;
/// Sync policy: every append is durable when it returns (one fsync each).
pub const PS_SYNC_EVERY_APPEND: i32 = 1;
/// Sync policy: every append is durable when it returns; concurrent appends share fsyncs.
pub const PS_SYNC_GROUP_COMMIT: i32 = 2;

/// Compression: let the store choose by size (none < 1 KiB <= LZ4 <= 100 KiB < ZSTD).
pub const PS_COMPRESSION_AUTO: i32 = -1;
/// Compression: store raw.
pub const PS_COMPRESSION_NONE: i32 = 0;
/// Compression: LZ4 block.
pub const PS_COMPRESSION_LZ4: i32 = 1;
/// Compression: ZSTD frame.
pub const PS_COMPRESSION_ZSTD: i32 = 2;

/// Log level passed to a `ps_log_fn`: error.
pub const PS_LOG_ERROR: i32 = 1;
/// Log level passed to a `ps_log_fn`: warning (memory growth, torn tail cut).
pub const PS_LOG_WARN: i32 = 2;
/// Log level passed to a `ps_log_fn`: information (what recovery did).
pub const PS_LOG_INFO: i32 = 3;

/// Recovery source in `ps_stats`: a new store was created.
pub const PS_RECOVERY_CREATED: i32 = 0;
/// Recovery source in `ps_stats`: checkpoint loaded, log tail replayed.
pub const PS_RECOVERY_CHECKPOINT: i32 = 1;
/// Recovery source in `ps_stats`: the whole log was scanned.
pub const PS_RECOVERY_FULL_SCAN: i32 = 2;

/// A 128-bit edge id as two 64-bit halves: `id = (hi << 64) | lo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ps_edge_id {
    /// High 64 bits.
    pub hi: u64,
    /// Low 64 bits.
    pub lo: u64,
}

impl ps_edge_id {
    fn get(self) -> u128 {
        (u128::from(self.hi) << 64) | u128::from(self.lo)
    }
    fn from(id: u128) -> ps_edge_id {
        ps_edge_id {
            hi: (id >> 64) as u64,
            lo: id as u64,
        }
    }
}

/// Where a payload is stored: what `ps_store_append` returns and
/// `ps_store_get_at` reads. Embed it in your own files; it stays valid
/// (even after the id is replaced or deleted) until compaction.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ps_location {
    /// Byte offset of the record in the log.
    pub offset: u64,
    /// Stored (possibly compressed) length.
    pub length: u32,
    /// `PS_COMPRESSION_NONE`, `_LZ4` or `_ZSTD`.
    pub compression: u8,
}

/// Every figure of `PayloadStats`, fixed-width.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ps_stats {
    /// Live payloads.
    pub payloads: u64,
    /// Bytes of live records in the log (headers included).
    pub live_bytes: u64,
    /// Bytes of dead records (replaced, deleted, tombstones, padding).
    pub dead_bytes: u64,
    /// Length of the log.
    pub file_bytes: u64,
    /// Uncompressed bytes of the live payloads.
    pub raw_bytes: u64,
    /// Live payloads per compression: [none, LZ4, ZSTD].
    pub count_by_compression: [u64; 3],
    /// Their uncompressed bytes.
    pub raw_bytes_by_compression: [u64; 3],
    /// Their stored bytes.
    pub stored_bytes_by_compression: [u64; 3],
    /// raw / stored bytes of live payloads (1.0 when empty).
    pub compression_ratio: f64,
    /// RAM held by the index (HashMap backend: also a table being grown
    /// beside the current one).
    pub index_memory_bytes: u64,
    /// Index RAM per live payload.
    pub index_bytes_per_payload: f64,
    /// `PS_INDEX_HASHMAP` or `PS_INDEX_DISKHASH`.
    pub backend: i32,
    /// `PS_RECOVERY_*`: where the index came from at open.
    pub recovery_source: i32,
    /// Log offset below which everything is durable.
    pub durable_offset: u64,
    /// Unix time of the last checkpoint (0: none).
    pub last_checkpoint_unix: u64,
    /// Log offset the last checkpoint covers.
    pub last_checkpoint_offset: u64,
    /// Records replayed at open.
    pub recovery_replayed_records: u64,
    /// Bytes replayed at open.
    pub recovery_replayed_bytes: u64,
    /// Bytes of a torn tail cut off at open.
    pub recovery_torn_tail_bytes: u64,
    /// Damaged regions replaced by padding (repair).
    pub recovery_repaired_regions: u64,
    /// 1 when a checkpoint existed but could not be used.
    pub recovery_checkpoint_rejected: u32,
    /// Duration of the open, microseconds.
    pub recovery_micros: u64,
    /// Bytes of the DiskHash index file in use (0 with `PS_INDEX_HASHMAP`).
    pub index_file_bytes: u64,
}

/// Receives the store's log messages (memory warnings, recovery, errors):
/// `level` is a `PS_LOG_*` value, `message` is valid only during the call.
/// Called from whichever thread triggers the message: it must be thread-safe.
pub type ps_log_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, level: i32, message: *const c_char)>;

/// Open options (a builder). Not thread-safe: build it on one thread, pass
/// it to `ps_store_open`, then free it (the store keeps its own copy).
pub struct ps_options {
    _opaque: [u8; 0],
}

/// An open store. Thread-safe: share one `ps_store *` between threads; reads
/// run concurrently, appends are serialized.
pub struct ps_store {
    _opaque: [u8; 0],
}

/// A snapshot of a store's ids and locations for iteration. Movable, not
/// shared: use it from one thread at a time. It does not borrow the store.
pub struct ps_iter {
    _opaque: [u8; 0],
}

/// What a `ps_iter` holds.
pub(crate) struct IterState {
    items: Vec<(u128, (u64, u32, u8))>,
    next: usize,
}

impl Handle for ps_options {
    type Inner = Options;
    const MAGIC: u64 = 0x7073_6f70_7469_6f6e;
}
impl Handle for ps_store {
    type Inner = PayloadStore;
    const MAGIC: u64 = 0x7073_7374_6f72_6521;
}
impl Handle for ps_iter {
    type Inner = IterState;
    const MAGIC: u64 = 0x7073_6974_6572_2121;
}

fn fail(e: crate::Error) -> ps_status {
    of(&e)
}

/// Pointer + userdata of a C log callback, movable between threads: the
/// caller of `ps_options_set_log_callback` promises thread safety.
#[derive(Clone, Copy)]
struct CLogger {
    f: unsafe extern "C" fn(*mut c_void, i32, *const c_char),
    user: *mut c_void,
}
// SAFETY: the header requires the callback and its userdata to be usable
// from any thread; we only pass them back to the callback.
unsafe impl Send for CLogger {}
// SAFETY: as above.
unsafe impl Sync for CLogger {}

/// Creates default options. Free with `ps_options_free`. NULL only if out of memory.
#[no_mangle]
pub extern "C" fn ps_options_new() -> *mut ps_options {
    guard(std::ptr::null_mut(), || {
        into_handle::<ps_options>(Options::default())
    })
}

/// Frees options. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ps_options_free(opts: *mut ps_options) {
    guard((), || {
        let _ = take_handle(opts);
    });
}

fn set_option(
    opts: *mut ps_options,
    f: impl FnOnce(Options) -> Result<Options, ps_status>,
) -> ps_status {
    run(|| {
        let o = handle_mut(opts)?;
        *o = f(o.clone())?;
        Ok(PS_OK)
    })
}

/// Index backend: `PS_INDEX_HASHMAP` or `PS_INDEX_DISKHASH`.
#[no_mangle]
pub extern "C" fn ps_options_set_index_backend(opts: *mut ps_options, backend: i32) -> ps_status {
    set_option(opts, |o| match backend {
        PS_INDEX_HASHMAP => Ok(o.backend(IndexBackend::HashMap)),
        PS_INDEX_DISKHASH => Ok(o.backend(IndexBackend::DiskHash)),
        _ => Err(PS_ERR_INVALID_ARGUMENT),
    })
}

/// Sync policy: `PS_SYNC_MANUAL`, `PS_SYNC_EVERY_APPEND` or `PS_SYNC_GROUP_COMMIT`.
#[no_mangle]
pub extern "C" fn ps_options_set_sync_policy(opts: *mut ps_options, policy: i32) -> ps_status {
    set_option(opts, |o| match policy {
        PS_SYNC_MANUAL => Ok(o.sync_policy(SyncPolicy::Manual)),
        PS_SYNC_EVERY_APPEND => Ok(o.sync_policy(SyncPolicy::EveryAppend)),
        PS_SYNC_GROUP_COMMIT => Ok(o.sync_policy(SyncPolicy::GroupCommit)),
        _ => Err(PS_ERR_INVALID_ARGUMENT),
    })
}

/// Receives log messages (memory warnings etc.); `fn` NULL removes it.
/// `fn` is called from any thread with `userdata`; both must stay valid
/// until the store is closed.
#[no_mangle]
pub extern "C" fn ps_options_set_log_callback(
    opts: *mut ps_options,
    r#fn: ps_log_fn,
    userdata: *mut c_void,
) -> ps_status {
    set_option(opts, |mut o| {
        match r#fn {
            None => o.logger = None,
            Some(f) => {
                let l = CLogger { f, user: userdata };
                o = o.log_callback(Arc::new(move |level: LogLevel, msg: &str| {
                    let l = l;
                    boundary::call_log(l.f, l.user, level as i32, msg);
                }));
            }
        }
        Ok(o)
    })
}

/// Read-only (non-zero): no writes; several read-only handles may share a store.
#[no_mangle]
pub extern "C" fn ps_options_set_read_only(opts: *mut ps_options, read_only: bool) -> ps_status {
    set_option(opts, |o| Ok(o.read_only(read_only)))
}

/// Repair (non-zero): keep every intact record when the log is damaged.
#[no_mangle]
pub extern "C" fn ps_options_set_repair(opts: *mut ps_options, repair: bool) -> ps_status {
    set_option(opts, |o| Ok(o.repair(repair)))
}

/// Automatic compression on (default) or off (`PS_COMPRESSION_AUTO` stores raw).
#[no_mangle]
pub extern "C" fn ps_options_set_compression_enabled(
    opts: *mut ps_options,
    enabled: bool,
) -> ps_status {
    set_option(opts, |o| Ok(o.compression_enabled(enabled)))
}

/// Thresholds of the automatic choice: LZ4 from `lz4_min` bytes, ZSTD above
/// `zstd_above` bytes, at `zstd_level` (1..=22). `lz4_min` <= `zstd_above`.
#[no_mangle]
pub extern "C" fn ps_options_set_compression_thresholds(
    opts: *mut ps_options,
    lz4_min: u64,
    zstd_above: u64,
    zstd_level: i32,
) -> ps_status {
    set_option(opts, |o| {
        if lz4_min > zstd_above || !(1..=22).contains(&zstd_level) {
            return Err(PS_ERR_INVALID_ARGUMENT);
        }
        let mut p = o.compression;
        p.lz4_min = usize::try_from(lz4_min).map_err(|_| PS_ERR_INVALID_ARGUMENT)?;
        p.zstd_above = usize::try_from(zstd_above).map_err(|_| PS_ERR_INVALID_ARGUMENT)?;
        p.zstd_level = zstd_level;
        Ok(o.compression(p))
    })
}

/// Index-memory thresholds (bytes) at which a warning is logged once each.
/// `(NULL, 0)` turns warnings off.
#[no_mangle]
pub extern "C" fn ps_options_set_memory_warnings(
    opts: *mut ps_options,
    thresholds: *const u64,
    count: usize,
) -> ps_status {
    run(|| {
        let t: Vec<u64> = if count == 0 {
            Vec::new()
        } else {
            let raw = bytes(
                thresholds.cast(),
                count.checked_mul(8).ok_or(PS_ERR_INVALID_ARGUMENT)?,
            )?;
            raw.chunks_exact(8)
                .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default()))
                .collect()
        };
        let o = handle_mut(opts)?;
        *o = o.clone().memory_warnings(t);
        Ok(PS_OK)
    })
}

/// Checkpoints the index automatically after this many appended bytes (0 = never;
/// HashMap backend only, the DiskHash table is checkpointed at save and close).
#[no_mangle]
pub extern "C" fn ps_options_set_auto_checkpoint(opts: *mut ps_options, bytes: u64) -> ps_status {
    set_option(opts, |o| Ok(o.auto_checkpoint_bytes(bytes)))
}

/// DiskHash: page-cache budget (bytes) for rebuilding the index from the log;
/// a bigger table is built in sequential passes (default: half of RAM).
#[no_mangle]
pub extern "C" fn ps_options_set_rebuild_memory(opts: *mut ps_options, bytes: u64) -> ps_status {
    set_option(opts, |o| Ok(o.rebuild_memory_bytes(bytes)))
}

/// Whether a helper thread populates the log's pages ahead of unsynced
/// appends (Linux; default 1 = on, 0 = off: the store uses only the
/// caller's threads).
#[no_mangle]
pub extern "C" fn ps_options_set_prefault(opts: *mut ps_options, enabled: i32) -> ps_status {
    set_option(opts, |o| Ok(o.prefault(enabled != 0)))
}

/// Whether the HashMap index grows in a helper thread (default 1 = on; 0 =
/// off: the appending thread rebuilds the table itself, and with
/// `ps_options_set_prefault(opts, 0)` too the store uses only the caller's
/// threads).
#[no_mangle]
pub extern "C" fn ps_options_set_index_growth_thread(
    opts: *mut ps_options,
    enabled: i32,
) -> ps_status {
    set_option(opts, |o| Ok(o.index_growth_thread(enabled != 0)))
}

/// Logs up to this many bytes at open are read through 2 MiB pages up to
/// where they ended (Linux with transparent huge pages and large page-cache
/// folios): much faster cold reads after a restart. Default: a quarter of
/// physical memory; 0 = never (every cold read brings in 4 KiB).
#[no_mangle]
pub extern "C" fn ps_options_set_huge_reads_max(opts: *mut ps_options, bytes: u64) -> ps_status {
    set_option(opts, |o| Ok(o.huge_reads_max(bytes)))
}

/// HashMap backend: the number of payloads the store is expected to hold
/// (default 0: no guess). The RAM index is sized for that many at open
/// (18.8 B per expected payload), so loading them triggers no table rebuild
/// (each copies the whole table inside an append: ~20 ms at 1M payloads).
/// Ignored by DiskHash. A count whose index would not fit in physical
/// memory makes `ps_store_open` fail with PS_ERR_INVALID_ARGUMENT.
#[no_mangle]
pub extern "C" fn ps_options_set_expected_payloads(opts: *mut ps_options, count: u64) -> ps_status {
    set_option(opts, |o| Ok(o.expected_payloads(count)))
}

/// Opens (creating if needed) the store in directory `dir` (NUL-terminated).
/// `opts` may be NULL for defaults; it is not consumed. On success writes
/// the handle to `*out_store` (free it with `ps_store_close`).
#[no_mangle]
pub extern "C" fn ps_store_open(
    dir: *const c_char,
    opts: *const ps_options,
    out_store: *mut *mut ps_store,
) -> ps_status {
    run(|| {
        let out = out_ptr(out_store)?;
        let dir = path(dir)?;
        let options = if opts.is_null() {
            Options::default()
        } else {
            handle(opts)?.clone()
        };
        let store = PayloadStore::open_with_options(dir, options).map_err(fail)?;
        write_out(out, into_handle::<ps_store>(store));
        Ok(PS_OK)
    })
}

/// Syncs, saves the index, and frees the store; returns the first error (the
/// store is freed either way). NULL is a no-op. No other thread may use the
/// store during or after this call.
#[no_mangle]
pub extern "C" fn ps_store_close(store: *mut ps_store) -> ps_status {
    run(|| match take_handle(store)? {
        None => Ok(PS_OK),
        Some(s) => s.close().map(|()| PS_OK).map_err(fail),
    })
}

fn compression_arg(c: i32) -> Result<Option<CompressionType>, ps_status> {
    match c {
        PS_COMPRESSION_AUTO => Ok(None),
        0..=2 => CompressionType::try_from(c as u8)
            .map(Some)
            .map_err(|_| PS_ERR_INVALID_COMPRESSION),
        _ => Err(PS_ERR_INVALID_COMPRESSION),
    }
}

/// Appends `len` bytes at `data` for `id` (replacing any earlier payload).
/// `compression` is a `PS_COMPRESSION_*` value. Writes the location to
/// `*out_loc` unless it is NULL. `(NULL, 0)` appends an empty payload.
#[no_mangle]
pub extern "C" fn ps_store_append(
    store: *mut ps_store,
    id: ps_edge_id,
    data: *const u8,
    len: usize,
    compression: i32,
    out_loc: *mut ps_location,
) -> ps_status {
    run(|| {
        let s = handle(store)?;
        let c = compression_arg(compression)?;
        let data = bytes(data, len)?;
        let (offset, length, tag) = s.append(id.get(), data, c).map_err(fail)?;
        write_out(
            out_loc,
            ps_location {
                offset,
                length,
                compression: tag,
            },
        );
        Ok(PS_OK)
    })
}

/// Appends `count` payloads, written together and published at once (see
/// `PayloadStore::append_batch`): payload `i` is `lens[i]` bytes
/// at `datas[i]` for `ids[i]` (a later duplicate id wins). Writes the
/// locations to `out_locs[0..count]` unless it is NULL. Nothing of it
/// becomes visible when it fails. `count == 0` is a no-op.
#[no_mangle]
pub extern "C" fn ps_store_append_batch(
    store: *mut ps_store,
    ids: *const ps_edge_id,
    datas: *const *const u8,
    lens: *const usize,
    count: usize,
    compression: i32,
    out_locs: *mut ps_location,
) -> ps_status {
    run(|| {
        let s = handle(store)?;
        let c = compression_arg(compression)?;
        if count == 0 {
            return Ok(PS_OK);
        }
        let ids = boundary::array(ids, count)?;
        let datas = boundary::array(datas, count)?;
        let lens = boundary::array(lens, count)?;
        let mut items = Vec::with_capacity(count);
        for i in 0..count {
            items.push((ids[i].get(), bytes(datas[i], lens[i])?));
        }
        let locs = s.append_batch(&items, c).map_err(fail)?;
        if !out_locs.is_null() {
            let out = boundary::array_mut(out_locs, count)?;
            for (o, (offset, length, tag)) in out.iter_mut().zip(locs) {
                *o = ps_location {
                    offset,
                    length,
                    compression: tag,
                };
            }
        }
        Ok(PS_OK)
    })
}

/// Deletes `id`. Writes whether it existed to `*out_existed` unless NULL.
#[no_mangle]
pub extern "C" fn ps_store_delete(
    store: *mut ps_store,
    id: ps_edge_id,
    out_existed: *mut bool,
) -> ps_status {
    run(|| {
        let s = handle(store)?;
        let existed = s.delete(id.get()).map_err(fail)?;
        write_out(out_existed, existed);
        Ok(PS_OK)
    })
}

/// Copies the payload of `id` into a new library buffer `*out_buf` (free it
/// with `ps_buf_free`). `PS_NOT_FOUND` when absent (`*out_buf` untouched).
#[no_mangle]
pub extern "C" fn ps_store_get(
    store: *const ps_store,
    id: ps_edge_id,
    out_buf: *mut ps_buf,
) -> ps_status {
    run(|| {
        let out = out_ptr(out_buf)?;
        let s = handle(store)?;
        match s.get(id.get()).map_err(fail)? {
            None => Ok(PS_NOT_FOUND),
            Some(v) => {
                write_out(out, buf_from_vec(v));
                Ok(PS_OK)
            }
        }
    })
}

/// Looks up `count` ids at once, overlapping their memory accesses (about
/// twice the throughput of one `ps_store_get` per id on large stores). For
/// each `i`: `out_status[i]` is `PS_OK` with the payload in `out_bufs[i]`
/// (free each with `ps_buf_free`), `PS_NOT_FOUND` with `out_bufs[i]` empty,
/// or the error of that lookup with `out_bufs[i]` empty. Returns `PS_OK`
/// when the per-id outcomes were written, or an argument error (then
/// nothing was written). `count == 0` is a no-op.
#[no_mangle]
pub extern "C" fn ps_store_get_many(
    store: *const ps_store,
    ids: *const ps_edge_id,
    count: usize,
    out_bufs: *mut ps_buf,
    out_status: *mut ps_status,
) -> ps_status {
    run(|| {
        let s = handle(store)?;
        if count == 0 {
            return Ok(PS_OK);
        }
        let ids = boundary::array(ids, count)?;
        let bufs = boundary::array_mut(out_bufs, count)?;
        let status = boundary::array_mut(out_status, count)?;
        let want: Vec<u128> = ids.iter().map(|id| id.get()).collect();
        for (i, got) in s.get_many(&want).into_iter().enumerate() {
            let (st, buf) = match got {
                Ok(Some(v)) => (PS_OK, buf_from_vec(v)),
                Ok(None) => (PS_NOT_FOUND, buf_from_vec(Vec::new())),
                Err(e) => (fail(e), buf_from_vec(Vec::new())),
            };
            bufs[i] = buf;
            status[i] = st;
        }
        Ok(PS_OK)
    })
}

/// Copies the payload of `id` into the caller's `buf` of `cap` bytes and
/// writes its length to `*out_len`. `PS_ERR_BUFFER_TOO_SMALL` writes the
/// needed size to `*out_len`; `PS_NOT_FOUND` when absent.
#[no_mangle]
pub extern "C" fn ps_store_get_into(
    store: *const ps_store,
    id: ps_edge_id,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> ps_status {
    run(|| {
        let out = out_ptr(out_len)?;
        let s = handle(store)?;
        let b = bytes_mut(buf, cap)?;
        match s.get_into(id.get(), b) {
            Ok(None) => Ok(PS_NOT_FOUND),
            Ok(Some(n)) => {
                write_out(out, n);
                Ok(PS_OK)
            }
            Err(crate::Error::BufferTooSmall { needed }) => {
                write_out(out, needed);
                Ok(PS_ERR_BUFFER_TOO_SMALL)
            }
            Err(e) => Err(fail(e)),
        }
    })
}

/// Reads a location from `ps_store_append` into a new library buffer.
/// Anything but exactly a payload record of that length and compression is
/// `PS_ERR_INVALID_LOCATION` - never other bytes.
#[no_mangle]
pub extern "C" fn ps_store_get_at(
    store: *const ps_store,
    loc: ps_location,
    out_buf: *mut ps_buf,
) -> ps_status {
    run(|| {
        let out = out_ptr(out_buf)?;
        let s = handle(store)?;
        let c = CompressionType::try_from(loc.compression).map_err(|_| PS_ERR_INVALID_LOCATION)?;
        let v = s.get_at_offset(loc.offset, loc.length, c).map_err(fail)?;
        write_out(out, buf_from_vec(v));
        Ok(PS_OK)
    })
}

/// Whether `id` has a payload (false for a NULL or invalid store).
#[no_mangle]
pub extern "C" fn ps_store_contains(store: *const ps_store, id: ps_edge_id) -> bool {
    guard(false, || {
        handle(store).is_ok_and(|s| s.has_payload(id.get()))
    })
}

/// Number of live payloads (0 for a NULL or invalid store).
#[no_mangle]
pub extern "C" fn ps_store_len(store: *const ps_store) -> u64 {
    guard(0, || handle(store).map_or(0, |s| s.len() as u64))
}

/// Log offset below which every record is durable; a location is durable
/// when `offset + 32 + length <= ps_store_durable_offset()`.
#[no_mangle]
pub extern "C" fn ps_store_durable_offset(store: *const ps_store) -> u64 {
    guard(0, || handle(store).map_or(0, |s| s.durable_offset()))
}

/// Makes every append that returned before this call durable.
#[no_mangle]
pub extern "C" fn ps_store_sync(store: *mut ps_store) -> ps_status {
    run(|| handle(store)?.sync().map(|()| PS_OK).map_err(fail))
}

/// Saves the index checkpoint atomically (after syncing the log).
#[no_mangle]
pub extern "C" fn ps_store_save_index(store: *mut ps_store) -> ps_status {
    run(|| handle(store)?.save_index().map(|()| PS_OK).map_err(fail))
}

/// Fills `*out_stats`. O(1).
#[no_mangle]
pub extern "C" fn ps_store_stats(store: *const ps_store, out_stats: *mut ps_stats) -> ps_status {
    run(|| {
        let out = out_ptr(out_stats)?;
        let st = handle(store)?.stats();
        let r = &st.recovery;
        write_out(
            out,
            ps_stats {
                payloads: st.payloads,
                live_bytes: st.live_bytes,
                dead_bytes: st.dead_bytes,
                file_bytes: st.file_bytes,
                raw_bytes: st.raw_bytes,
                count_by_compression: st.by_compression.map(|c| c.count),
                raw_bytes_by_compression: st.by_compression.map(|c| c.raw_bytes),
                stored_bytes_by_compression: st.by_compression.map(|c| c.stored_bytes),
                compression_ratio: st.compression_ratio,
                index_memory_bytes: st.index_memory_bytes,
                index_bytes_per_payload: st.index_bytes_per_payload,
                backend: match st.backend {
                    IndexBackend::HashMap => PS_INDEX_HASHMAP,
                    IndexBackend::DiskHash => PS_INDEX_DISKHASH,
                },
                recovery_source: match r.source {
                    IndexSource::Created => PS_RECOVERY_CREATED,
                    IndexSource::Checkpoint => PS_RECOVERY_CHECKPOINT,
                    IndexSource::FullScan => PS_RECOVERY_FULL_SCAN,
                },
                durable_offset: st.durable_offset,
                last_checkpoint_unix: st.last_checkpoint_unix.unwrap_or(0),
                last_checkpoint_offset: st.last_checkpoint_offset,
                recovery_replayed_records: r.replayed_records,
                recovery_replayed_bytes: r.replayed_bytes,
                recovery_torn_tail_bytes: r.torn_tail_bytes,
                recovery_repaired_regions: r.repaired_regions.len() as u64,
                recovery_checkpoint_rejected: u32::from(
                    r.checkpoint_problem.is_some() && r.source == IndexSource::FullScan,
                ),
                recovery_micros: r.duration.as_micros() as u64,
                index_file_bytes: st.index_file_bytes,
            },
        );
        Ok(PS_OK)
    })
}

/// What `ps_store_verify` found (see `PayloadStore::verify`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ps_verify_report {
    /// Intact records read.
    pub records: u64,
    /// Bytes of log looked at.
    pub bytes: u64,
    /// Damaged regions of the log.
    pub damaged_regions: u64,
    /// Bytes in them.
    pub damaged_bytes: u64,
    /// Offset of the first damaged region (0 when none).
    pub first_damaged_offset: u64,
    /// Index entries checked.
    pub index_entries: u64,
    /// Index entries whose record is damaged or not where its id leads.
    pub index_errors: u64,
    /// Log offset the first of them points at (0 when none).
    pub first_index_error_offset: u64,
}

/// Scrubs the store: every record's checksum up to the committed end, then
/// every index entry. Fills `*out_report`; damage is reported there, not as
/// a status (`PS_ERR_CORRUPT` only for a damaged DiskHash page). One pass
/// over the log; runs beside readers and the writer.
#[no_mangle]
pub extern "C" fn ps_store_verify(
    store: *const ps_store,
    out_report: *mut ps_verify_report,
) -> ps_status {
    run(|| {
        let out = out_ptr(out_report)?;
        let r = handle(store)?.verify().map_err(fail)?;
        write_out(
            out,
            ps_verify_report {
                records: r.records,
                bytes: r.bytes,
                damaged_regions: r.damaged.len() as u64,
                damaged_bytes: r.damaged.iter().map(|d| d.1).sum(),
                first_damaged_offset: r.damaged.first().map_or(0, |d| d.0),
                index_entries: r.index_entries,
                index_errors: r.index_errors,
                first_index_error_offset: r.first_index_error.unwrap_or(0),
            },
        );
        Ok(PS_OK)
    })
}

/// What `ps_store_compact` did (see `PayloadStore::compact`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ps_compact_report {
    /// Live payloads copied to the new log.
    pub payloads: u64,
    /// Log file bytes before.
    pub bytes_before: u64,
    /// Log file bytes after.
    pub bytes_after: u64,
    /// Compaction generation of the new log (1 after the first).
    pub generation: u64,
    /// Time taken, in microseconds.
    pub micros: u64,
}

/// Rewrites the log with only its live payloads (replaced and deleted ones
/// are dropped). Fills `*out_report` unless it is NULL. Other threads may
/// go on reading and appending: appends wait only for the switch to the new
/// log at the end; one compaction runs at a time. Needs free disk space for
/// the live bytes. Locations from before it are void after it.
///
/// Errors, each leaving the store as it was and usable:
/// `PS_ERR_READ_ONLY`, `PS_ERR_POISONED`; `PS_ERR_CORRUPT` when a live
/// payload's record is damaged (delete or replace it first; damage in dead
/// records is dropped); `PS_ERR_NO_SPACE` or `PS_ERR_IO` from writing the
/// new log. An I/O error after the new log is in place poisons the handle
/// (reads still work, writes return `PS_ERR_POISONED`): close and reopen.
#[no_mangle]
pub extern "C" fn ps_store_compact(
    store: *const ps_store,
    out_report: *mut ps_compact_report,
) -> ps_status {
    run(|| {
        let r = handle(store)?.compact().map_err(fail)?;
        write_out(
            out_report,
            ps_compact_report {
                payloads: r.payloads,
                bytes_before: r.bytes_before,
                bytes_after: r.bytes_after,
                generation: r.generation,
                micros: r.duration.as_micros() as u64,
            },
        );
        Ok(PS_OK)
    })
}

/// Starts an iteration over a snapshot of the live ids (taken now, in no
/// particular order). Free with `ps_iter_free`.
#[no_mangle]
pub extern "C" fn ps_store_iter(store: *const ps_store, out_iter: *mut *mut ps_iter) -> ps_status {
    run(|| {
        let out = out_ptr(out_iter)?;
        let s = handle(store)?;
        let mut items = Vec::with_capacity(s.len());
        s.for_each(|id, loc| items.push((id, loc))).map_err(fail)?;
        write_out(out, into_handle::<ps_iter>(IterState { items, next: 0 }));
        Ok(PS_OK)
    })
}

/// Writes the next id and its location (either out pointer may be NULL).
/// `PS_NOT_FOUND` when the iteration is over.
#[no_mangle]
pub extern "C" fn ps_iter_next(
    iter: *mut ps_iter,
    out_id: *mut ps_edge_id,
    out_loc: *mut ps_location,
) -> ps_status {
    run(|| {
        let it = handle_mut(iter)?;
        let Some(&(id, (offset, length, compression))) = it.items.get(it.next) else {
            return Ok(PS_NOT_FOUND);
        };
        it.next += 1;
        write_out(out_id, ps_edge_id::from(id));
        write_out(
            out_loc,
            ps_location {
                offset,
                length,
                compression,
            },
        );
        Ok(PS_OK)
    })
}

/// Frees an iterator. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ps_iter_free(iter: *mut ps_iter) {
    guard((), || {
        let _ = take_handle(iter);
    });
}

/// Frees the bytes of a buffer filled by this library and empties it
/// (`data = NULL, len = 0`). NULL and empty buffers are fine.
#[no_mangle]
pub extern "C" fn ps_buf_free(buf: *mut ps_buf) {
    guard((), || boundary::buf_free(buf));
}

/// Static text of a status (never NULL, never freed).
#[no_mangle]
pub extern "C" fn ps_status_str(status: ps_status) -> *const c_char {
    text(status)
}

/// The library version as `major * 10000 + minor * 100 + patch`.
#[no_mangle]
pub extern "C" fn ps_version_number() -> u32 {
    let p = |s: &str| s.parse::<u32>().unwrap_or(0);
    p(env!("CARGO_PKG_VERSION_MAJOR")) * 10000
        + p(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + p(env!("CARGO_PKG_VERSION_PATCH"))
}

/// The library version as a static string, e.g. "0.1.0".
#[no_mangle]
pub extern "C" fn ps_version_string() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
