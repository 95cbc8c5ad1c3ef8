//! Thin wrappers over OS calls: directory locking, space reservation,
//! directory sync, randomness — and the CPU's prefetch hint. Durable side
//! effects reach them through `io::Io`.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Takes an exclusive (writer) or shared (read-only) lock on `<dir>/LOCK`.
/// The lock lives as long as the returned file. `flock` locks belong to the
/// open file description, so a second handle in the same process conflicts
/// too, not only another process.
pub fn lock_dir(path: &Path, exclusive: bool) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .map_err(|e| Error::io("creating the lock file", path, e))?;
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    } | libc::LOCK_NB;
    // SAFETY: flock takes a valid, open descriptor owned by `file` and an integer flag.
    let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return Err(if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Error::Locked {
                path: path.to_path_buf(),
            }
        } else {
            Error::io("locking the store", path, err)
        });
    }
    Ok(file)
}

/// Grows `file` to `new_len` bytes with blocks reserved on disk, so that later
/// stores through a shared mapping cannot fail with SIGBUS on a full disk: a
/// full disk is reported here, as `Error::NoSpace`, before anything is written.
pub fn reserve(file: &File, path: &Path, old_len: u64, new_len: u64) -> Result<()> {
    debug_assert!(new_len >= old_len);
    #[cfg(target_os = "linux")]
    {
        let (off, len) = (to_off(old_len)?, to_off(new_len - old_len)?);
        // SAFETY: fallocate on a valid descriptor with in-range offsets.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, off, len) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(Error::io("reserving space in the log", path, err));
        }
    }
    // Fallback for file systems without fallocate: glibc's posix_fallocate
    // writes zeros, which also reserves the blocks.
    let (off, len) = (to_off(old_len)?, to_off(new_len - old_len)?);
    // SAFETY: as above.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), off, len) };
    if rc != 0 {
        return Err(Error::io(
            "reserving space in the log",
            path,
            std::io::Error::from_raw_os_error(rc),
        ));
    }
    Ok(())
}

fn to_off(v: u64) -> Result<libc::off_t> {
    libc::off_t::try_from(v).map_err(|_| Error::InvalidArgument("file offset out of range"))
}

/// Makes a directory entry change (create, rename) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| Error::io("opening the directory", dir, e))?;
    d.sync_all()
        .map_err(|e| Error::io("syncing the directory", dir, e))
}

/// Writes every buffer of `bufs`, back to back, at `off`, with as few
/// `pwritev` calls as the kernel allows (at most 1024 buffers per call,
/// short writes resumed).
pub fn pwritev_all(file: &File, bufs: &[&[u8]], off: u64) -> std::io::Result<()> {
    const IOV_MAX: usize = 1024;
    let mut iov: Vec<libc::iovec> = bufs
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    let mut first = 0usize;
    let mut at = off;
    while first < iov.len() {
        let n_iov = (iov.len() - first).min(IOV_MAX);
        let pos = libc::off_t::try_from(at)
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        // SAFETY: `iov[first..first + n_iov]` describes live, readable buffers
        // borrowed from `bufs` for the duration of the call; the descriptor is open.
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                iov[first..].as_ptr(),
                n_iov as libc::c_int,
                pos,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::WriteZero));
        }
        let mut n = n as usize;
        at += n as u64;
        // skip fully written buffers, trim a partly written one
        while n > 0 && first < iov.len() {
            if n >= iov[first].iov_len {
                n -= iov[first].iov_len;
                first += 1;
            } else {
                iov[first].iov_base = iov[first].iov_base.wrapping_byte_add(n);
                iov[first].iov_len -= n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// Eight random bytes from the OS (falls back to time and pid).
pub fn random_u64() -> u64 {
    let mut v = 0u64;
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getrandom writes at most 8 bytes into the local `v`.
        let n = unsafe { libc::getrandom((&raw mut v).cast(), size_of::<u64>(), 0) };
        if n == 8 && v != 0 {
            return v;
        }
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    v ^= t ^ (u64::from(std::process::id()) << 32);
    v | 1
}

/// Seconds since the unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The kernel's id of the current boot (36 ASCII bytes), or zeros when it is
/// unknown. Two processes see the same id iff no reboot happened between
/// them: it tells a process crash (page cache intact) from a machine crash.
pub fn boot_id() -> [u8; 36] {
    let mut id = [0u8; 36];
    if let Ok(s) = std::fs::read("/proc/sys/kernel/random/boot_id") {
        if s.len() >= 36 {
            id.copy_from_slice(&s[..36]);
        }
    }
    id
}

/// Physical memory in bytes (8 GiB if the system does not say).
pub fn physical_memory() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && size > 0 {
        pages as u64 * size as u64
    } else {
        8 << 30
    }
}

/// The size of a virtual memory page (4 KiB if the system does not say).
pub fn page_size() -> usize {
    static PAGE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let cached = PAGE.load(std::sync::atomic::Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let size = usize::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096);
    PAGE.store(size, std::sync::atomic::Ordering::Relaxed);
    size
}

/// Whether every page under `bytes` (which must lie in one memory map) is
/// in memory, per `mincore`: `Some(false)` as soon as one is not, `None`
/// when the kernel cannot say. About a microsecond whatever the length
/// (one call per 1 MiB), far less than `MADV_WILLNEED` on pages that are
/// already there (1.3 µs at 64 KiB, 12.5 µs at 1 MiB: it looks up every
/// page in the page cache).
pub fn resident(bytes: &[u8]) -> Option<bool> {
    const PAGES_PER_CALL: usize = 256;
    if bytes.is_empty() {
        return Some(true); // no page (and the pointer may dangle)
    }
    let page = page_size();
    let end = bytes.as_ptr() as usize + bytes.len();
    let mut at = bytes.as_ptr() as usize & !(page - 1);
    let mut vec = [0u8; PAGES_PER_CALL];
    while at < end {
        let pages = (end - at).div_ceil(page).min(PAGES_PER_CALL);
        // SAFETY: `[at, at + pages * page)` runs from the page holding the
        // first byte of `bytes` to at most the page holding its last, all
        // inside the map that holds `bytes` (maps are whole pages); mincore
        // reads only the state of those pages and writes `pages` <= 256
        // bytes into `vec`.
        let rc = unsafe {
            libc::mincore(
                at as *mut libc::c_void,
                pages * page,
                vec.as_mut_ptr().cast(),
            )
        };
        if rc != 0 {
            return None;
        }
        if vec[..pages].iter().any(|v| v & 1 == 0) {
            return Some(false);
        }
        at += pages * page;
    }
    Some(true)
}

/// Prefetches the cache line holding `word` (no-op off x86-64).
#[inline]
pub fn prefetch_line(word: &std::sync::atomic::AtomicU64) {
    prefetch_ptr((word as *const std::sync::atomic::AtomicU64).cast());
}

/// Prefetches every cache line of `bytes` (no-op off x86-64).
#[inline]
pub fn prefetch_bytes(bytes: &[u8]) {
    let mut at = 0;
    while at < bytes.len() {
        prefetch_ptr(bytes[at..].as_ptr());
        at += 64;
    }
}

#[inline]
pub fn prefetch_ptr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint with no architectural effect: it reads
    // nothing into the program and cannot fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Starts writeback of `[off, off + len)` of `file` without waiting (Linux
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`; nothing elsewhere). A hint:
/// errors are ignored, durability still comes from `fdatasync`.
pub fn start_writeback(file: &File, off: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        let (Ok(off), Ok(len)) = (libc::off64_t::try_from(off), libc::off64_t::try_from(len))
        else {
            return;
        };
        // SAFETY: a system call on an open descriptor with plain integers.
        let _ = unsafe {
            libc::sync_file_range(file.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE)
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, off, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pwritev_all_writes_more_buffers_than_one_call_takes() {
        let path = std::env::temp_dir().join(format!("ps-pwritev-{}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        // 3000 buffers (IOV_MAX is 1024), some empty, at an offset
        let bufs: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| vec![i as u8; (i % 7) as usize])
            .collect();
        let refs: Vec<&[u8]> = bufs.iter().map(|b| b.as_slice()).collect();
        pwritev_all(&file, &refs, 100).unwrap();
        let got = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(&got[..100], &[0u8; 100][..]);
        assert_eq!(&got[100..], &bufs.concat()[..]);
    }

    #[test]
    fn resident_tells_touched_pages_from_untouched_ones() {
        let page = page_size();
        let mut map = memmap2::MmapMut::map_anon(600 * page).unwrap();
        // Where transparent huge pages are "always" on, one write could
        // bring in 2 MiB around it.
        #[cfg(target_os = "linux")]
        map.advise(memmap2::Advice::NoHugePage).unwrap();
        assert_eq!(resident(&[]), Some(true));
        // Nothing touched yet: an anonymous page is not in memory.
        assert_eq!(resident(&map[page + 10..page + 20]), Some(false));
        // Touch pages 1..=300 (more than one mincore call covers).
        for p in 1..=300 {
            map[p * page] = 1;
        }
        assert_eq!(resident(&map[page + 10..301 * page - 1]), Some(true));
        assert_eq!(resident(&map[page..301 * page]), Some(true));
        // One page past the touched ones, or one untouched page in the
        // middle of a later call's range, makes the answer false.
        assert_eq!(resident(&map[page..301 * page + 1]), Some(false));
        for p in 302..=599 {
            if p != 590 {
                map[p * page] = 1;
            }
        }
        assert_eq!(resident(&map[302 * page..600 * page]), Some(false));
        assert_eq!(resident(&map[302 * page..590 * page]), Some(true));
    }
}
