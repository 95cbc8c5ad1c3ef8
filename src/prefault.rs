//! Background population of the log's pages just ahead of the write position.
//!
//! An `append` copies its record into the shared map of the log. The first
//! write to each 4 KiB page of fresh (reserved, not yet written) file space
//! faults: the kernel allocates a page-cache page, zeroes it, and asks the
//! file system to make it writable. Measured on w1 (`examples/bench`
//! history in BENCHMARKS.md), those faults were ~40 % of a per-record append.
//! Here a helper thread takes them instead, a window ahead of the writer,
//! with `madvise(MADV_POPULATE_WRITE)`, so on a machine with a spare core
//! the appending thread rarely faults.
//!
//! Populated pages are dirty (zeros) until the writer fills them, so a sync
//! in between writes them back twice. The store therefore asks for this
//! only while syncs are rare (`PayloadStore::prefault_wanted`); measured
//! with a sync every 1000 records, populating (even read-only, with
//! `MADV_POPULATE_READ`) made durable appends no faster, and writable
//! population made them 22 % slower.
//!
//! The thread only ever calls `madvise` on ranges the segment gave it; it
//! reads and writes no memory itself, and it is joined before the segment's
//! maps are unmapped (`Segment` declares it before its maps). Linux only
//! (the advice exists since 5.14; where the kernel refuses it, the thread
//! stops asking). Elsewhere `Prefaulter::start` returns `None`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

struct Job {
    addr: usize,
    len: usize,
}

/// The helper thread and the channel to it.
pub struct Prefaulter {
    tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// Set by the thread when the kernel refuses the advice.
    unsupported: Arc<AtomicBool>,
}

impl Prefaulter {
    /// Starts the helper thread; `None` where populating is not available.
    pub fn start() -> Option<Prefaulter> {
        if !cfg!(target_os = "linux") {
            return None;
        }
        let (tx, rx) = channel::<Job>();
        let unsupported = Arc::new(AtomicBool::new(false));
        let flag = unsupported.clone();
        let thread = std::thread::Builder::new()
            .name("payloadstore-prefault".into())
            .spawn(move || {
                for job in rx {
                    if !flag.load(Ordering::Relaxed) && !populate(&job) {
                        flag.store(true, Ordering::Relaxed);
                    }
                }
            })
            .ok()?;
        Some(Prefaulter {
            tx: Some(tx),
            thread: Some(thread),
            unsupported,
        })
    }

    /// Asks for `[addr, addr + len)` to be populated. `addr` must be page
    /// aligned and the range must lie in a map that stays mapped until this
    /// `Prefaulter` is dropped.
    pub fn request(&self, addr: *mut u8, len: usize) {
        if self.unsupported.load(Ordering::Relaxed) {
            return;
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(Job {
                addr: addr as usize,
                len,
            });
        }
    }
}

impl Drop for Prefaulter {
    fn drop(&mut self) {
        drop(self.tx.take()); // ends the thread's loop once the queue is empty
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs one job; false if the kernel does not know the advice.
#[cfg(target_os = "linux")]
fn populate(job: &Job) -> bool {
    // From <linux/mman.h> (Linux 5.14); the libc crate may lack it.
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    // SAFETY: the range lies in a mapping that outlives this thread (see
    // `request` and the module docs). Populating only faults pages in: it
    // neither reads nor changes their contents, so it cannot race with the
    // writer's copies or the readers' loads.
    let rc = unsafe { libc::madvise(job.addr as *mut libc::c_void, job.len, MADV_POPULATE_WRITE) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
}

#[cfg(not(target_os = "linux"))]
fn populate(_job: &Job) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of a fresh file map are not resident; after a request (and the
    /// join in drop) they are.
    #[cfg(target_os = "linux")]
    #[test]
    fn populates_a_file_map_ahead() {
        let dir = std::env::temp_dir().join(format!("ps-prefault-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("f"))
            .unwrap();
        let len = 64 * 4096;
        file.set_len(len as u64).unwrap();
        let map = memmap2::MmapOptions::new().len(len).map_raw(&file).unwrap();
        let resident = |map: &memmap2::MmapRaw| {
            let mut v = vec![0u8; len / 4096];
            // SAFETY: mincore reads the page tables of our own live map and
            // writes one byte per page into `v`, which has that many.
            let rc = unsafe { libc::mincore(map.as_mut_ptr().cast(), len, v.as_mut_ptr()) };
            assert_eq!(rc, 0);
            v.iter().filter(|&&b| b & 1 == 1).count()
        };
        assert_eq!(resident(&map), 0);
        let p = Prefaulter::start().unwrap();
        p.request(map.as_mut_ptr(), 16 * 4096);
        // SAFETY: inside the map (64 pages long).
        p.request(unsafe { map.as_mut_ptr().add(32 * 4096) }, 16 * 4096);
        let refused = p.unsupported.clone();
        drop(p); // joins: every request has run
        if !refused.load(Ordering::Relaxed) {
            assert!(resident(&map) >= 32, "{} pages resident", resident(&map));
        }
        drop(map);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
