//! `Options::huge_reads_max`: the part of the log written before open is
//! read through 2 MiB pages, and that must never make appends or syncs
//! write more. One test in its own process: it reads the process's I/O
//! counters.

mod common;
use common::{evict, payload, TempDir};
use payloadstore::{CompressionType, Options, PayloadStore};
use std::path::Path;

const LOG_FILE: &str = payloadstore::format::LOG_FILE;

/// Bytes this process caused to be written to storage (Linux task I/O
/// accounting: counted when a page is dirtied).
fn write_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Bytes of file pages this process maps with 2 MiB entries.
fn file_pmd_mapped() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("FilePmdMapped:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Whether this machine should map large page-cache folios with 2 MiB
/// entries: transparent huge pages not off, ext4 (large folios from Linux
/// 6.16 on).
fn pmd_maps_expected(dir: &Path) -> bool {
    let thp =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut v = kernel
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let recent = (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 16);
    // SAFETY: statfs fills the zeroed struct; the path is a valid C string.
    let ext4 = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type == 0xEF53
    };
    !thp.contains("[never]") && recent && ext4
}

#[test]
fn huge_reads_return_the_same_bytes_and_never_inflate_syncs() {
    let t = TempDir::new("huge");
    let n: u128 = 24_000; // ~12.7 MB of log: six 2 MiB folios below the end
    {
        let s = PayloadStore::open(t.store()).unwrap();
        let data: Vec<Vec<u8>> = (0..n).map(|i| payload(i, 500)).collect();
        let items: Vec<(u128, &[u8])> = data
            .iter()
            .enumerate()
            .map(|(i, d)| (i as u128, &d[..]))
            .collect();
        for c in items.chunks(1000) {
            s.append_batch(c, None).unwrap();
        }
    }
    let log = t.store().join(LOG_FILE);
    evict(&log);
    let before_pmd = file_pmd_mapped();
    let s = PayloadStore::open(t.store()).unwrap();
    // cold reads through the huge range and past it return the same bytes
    for i in (0..n).rev() {
        assert_eq!(s.get(i).unwrap().unwrap(), payload(i, 500), "id {i}");
    }
    if pmd_maps_expected(t.path()) {
        let (b, a) = (before_pmd.unwrap_or(0), file_pmd_mapped().unwrap_or(0));
        assert!(
            a >= b + (4 << 20),
            "2 MiB maps of the log expected: {b} -> {a} bytes"
        );
    }
    // The reads above faulted pages up to the last record. Appends through
    // the map (12 KiB each, over 4.8 MB of fresh log) with a sync each must
    // dirty about the bytes they write: a 2 MiB folio under them would make
    // every sync write it all back (two orders of magnitude more).
    let before = write_bytes();
    let rounds = 400u128;
    let len = 12 << 10;
    for i in n..n + rounds {
        s.append(i, &payload(i, len), Some(CompressionType::None))
            .unwrap();
        s.sync().unwrap();
    }
    if let (Some(b), Some(a)) = (before, write_bytes()) {
        let per_sync = (a - b) / rounds as u64;
        assert!(
            per_sync <= 64 << 10,
            "{per_sync} bytes written per 12 KiB append + sync"
        );
    }
    for i in 0..n + rounds {
        let want = payload(i, if i < n { 500 } else { len });
        assert_eq!(s.get(i).unwrap().unwrap(), want);
    }
    drop(s);
    // and with the option off, the same
    let s =
        PayloadStore::open_with_options(t.store(), Options::default().huge_reads_max(0)).unwrap();
    assert_eq!(s.len(), (n + rounds) as usize);
    assert_eq!(s.get(n / 2).unwrap().unwrap(), payload(n / 2, 500));
}
