//! Helpers shared by the integration tests.
#![allow(dead_code)]

use payloadstore::IndexBackend;
use std::path::{Path, PathBuf};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("ps-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn store(&self) -> PathBuf {
        self.0.join("store")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every index backend the suite runs against.
pub fn backends() -> Vec<IndexBackend> {
    vec![IndexBackend::HashMap, IndexBackend::DiskHash]
}

/// The file an index backend keeps its saved index in.
pub fn index_file(backend: IndexBackend) -> &'static str {
    match backend {
        IndexBackend::HashMap => "index.ckpt",
        IndexBackend::DiskHash => "index.dh",
    }
}

/// Plain CRC-32 (IEEE), bitwise: the test's own reference implementation.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// splitmix64: a tiny deterministic PRNG for test data.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const WORDS: &[&str] = &[
    "edge", "trace", "agent", "tool", "call", "result", "the", "of", "and", "payload", "store",
    "graph", "node", "vector", "span", "latency", "token", "prompt", "reply", "error", "retry",
    "cache", "{\"k\":", "},", "[1,2,3]",
];

/// Deterministic, text-like (compressible) payload of `len` bytes for `id`.
pub fn payload(id: u128, len: usize) -> Vec<u8> {
    let mut r = Rng((id as u64) ^ ((id >> 64) as u64).rotate_left(17) ^ len as u64);
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        if r.below(8) == 0 {
            v.extend_from_slice(&r.next().to_le_bytes()); // some entropy
        } else {
            v.extend_from_slice(WORDS[r.below(WORDS.len() as u64) as usize].as_bytes());
            v.push(b' ');
        }
    }
    v.truncate(len);
    v
}

/// Copies a directory's files (flat) to another directory.
pub fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// What a reboot does to a DiskHash index for the next open: if the header
/// says "dirty" (changed since its last checkpoint), the boot id in it no
/// longer matches the machine's. Used by the power-loss simulation, which
/// cannot reboot. (Layout: see src/index/disk.rs.)
pub fn simulate_reboot(index_file: &Path) {
    let Ok(mut f) = std::fs::read(index_file) else {
        return;
    };
    if f.len() < 4096 || f[32..36] != 2u32.to_le_bytes() {
        return;
    }
    f[36..72].copy_from_slice(&[b'x'; 36]);
    let crc = crc32(&f[..72]);
    f[72..76].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(index_file, f).unwrap();
}

/// For each 4 KiB page of `path`: whether it is in the page cache.
pub fn residency(path: &Path) -> Vec<bool> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    let mut vec = vec![0u8; len.div_ceil(4096)];
    if len == 0 {
        return Vec::new();
    }
    // SAFETY: a read-only shared mapping of an open file, unmapped below;
    // mincore writes one byte per page into `vec`, which has that many.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        assert_eq!(libc::mincore(p, len, vec.as_mut_ptr()), 0);
        libc::munmap(p, len);
    }
    vec.iter().map(|&b| b & 1 == 1).collect()
}

/// Pages of `path` resident in the page cache, and pages in all.
pub fn resident_pages(path: &Path) -> (usize, usize) {
    let r = residency(path);
    (r.iter().filter(|&&b| b).count(), r.len())
}

/// Writes `path`'s dirty pages back and drops its pages from the page cache.
pub fn evict(path: &Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    f.sync_all().unwrap();
    // SAFETY: advisory call on an open descriptor.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
}

/// Threads of this process whose name starts with `prefix` (Linux; 0
/// elsewhere).
pub fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.starts_with(prefix))
                })
                .count()
        })
        .unwrap_or(0)
}

/// The store's prefault thread (`src/prefault.rs`), as `comm` shows it.
pub const PREFAULT_THREAD: &str = "payloadstore-pr";
