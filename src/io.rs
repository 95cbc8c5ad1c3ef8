//! The narrow file-I/O interface every durable side effect goes through, so
//! that tests can inject faults (ENOSPC, EIO, short writes, failed fsync) at
//! any chosen operation — the way SQLite's I/O-error tests do: run a workload
//! once to count its operations, then rerun it failing the Nth, for every N.
//!
//! Bytes appended to the log are copied into its shared memory map and reach
//! the disk through `sync_data`; space for them is reserved through
//! `reserve`. Those two calls are where a full disk or a failing device
//! shows up for the log, and both are here.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// The I/O operations of the engine.
pub trait Io: Send + Sync {
    /// Grows `file` from `old_len` to `new_len` bytes with blocks reserved.
    fn reserve(&self, file: &File, path: &Path, old_len: u64, new_len: u64) -> Result<()>;
    /// Makes the file's data (and size) durable.
    fn sync_data(&self, file: &File, path: &Path) -> Result<()>;
    /// Sets the file length.
    fn set_len(&self, file: &File, path: &Path, len: u64) -> Result<()>;
    /// Asks the kernel to start writing `[off, off + len)` back without
    /// waiting (a hint: the next `sync_data` has less left to do). Default:
    /// nothing.
    fn start_writeback(&self, _file: &File, _off: u64, _len: u64) {}
    /// Writes all of `buf` at `off`.
    fn write_at(&self, file: &File, path: &Path, buf: &[u8], off: u64) -> Result<()>;
    /// Writes all of `bufs`, back to back, at `off` (`pwritev`).
    fn write_vectored_at(&self, file: &File, path: &Path, bufs: &[&[u8]], off: u64) -> Result<()>;
    /// Creates (truncating) a file for writing.
    fn create(&self, path: &Path) -> Result<File>;
    /// Appends all of `buf` to a file created by `create`.
    fn write_all(&self, file: &mut File, path: &Path, buf: &[u8]) -> Result<()>;
    /// Makes a whole file durable (data and metadata).
    fn sync_all(&self, file: &File, path: &Path) -> Result<()>;
    /// Renames `from` over `to`.
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Makes directory entries durable.
    fn sync_dir(&self, dir: &Path) -> Result<()>;
}

/// Writes `parts` to `<dir>/<tmp>`, syncs it, renames it over `<dir>/<name>`
/// and syncs the directory: readers of `name` see the old or the new file,
/// whole, never a mix.
pub fn write_atomic(io: &dyn Io, dir: &Path, tmp: &str, name: &str, parts: &[&[u8]]) -> Result<()> {
    let tmp_path = dir.join(tmp);
    let mut f = io.create(&tmp_path)?;
    for p in parts {
        io.write_all(&mut f, &tmp_path, p)?;
    }
    io.sync_all(&f, &tmp_path)?;
    drop(f);
    io.rename(&tmp_path, &dir.join(name))?;
    io.sync_dir(dir)
}

/// Removes `path`; one that does not exist is not an error.
pub fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing a stale file", path, e)),
    }
}

/// The real thing.
#[derive(Debug, Default)]
pub struct OsIo;

impl Io for OsIo {
    fn start_writeback(&self, file: &File, off: u64, len: u64) {
        crate::sys::start_writeback(file, off, len);
    }
    fn reserve(&self, file: &File, path: &Path, old_len: u64, new_len: u64) -> Result<()> {
        crate::sys::reserve(file, path, old_len, new_len)
    }
    fn sync_data(&self, file: &File, path: &Path) -> Result<()> {
        file.sync_data().map_err(|e| Error::io("syncing", path, e))
    }
    fn set_len(&self, file: &File, path: &Path, len: u64) -> Result<()> {
        file.set_len(len)
            .map_err(|e| Error::io("setting the file length", path, e))
    }
    fn write_at(&self, file: &File, path: &Path, buf: &[u8], off: u64) -> Result<()> {
        file.write_all_at(buf, off)
            .map_err(|e| Error::io("writing", path, e))
    }
    fn write_vectored_at(&self, file: &File, path: &Path, bufs: &[&[u8]], off: u64) -> Result<()> {
        crate::sys::pwritev_all(file, bufs, off).map_err(|e| Error::io("writing", path, e))
    }
    fn create(&self, path: &Path) -> Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(path)
            .map_err(|e| Error::io("creating", path, e))
    }
    fn write_all(&self, file: &mut File, path: &Path, buf: &[u8]) -> Result<()> {
        file.write_all(buf)
            .map_err(|e| Error::io("writing", path, e))
    }
    fn sync_all(&self, file: &File, path: &Path) -> Result<()> {
        file.sync_all().map_err(|e| Error::io("syncing", path, e))
    }
    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        std::fs::rename(from, to).map_err(|e| Error::io("renaming", to, e))
    }
    fn sync_dir(&self, dir: &Path) -> Result<()> {
        crate::sys::sync_dir(dir)
    }
}

/// What an injected fault looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with ENOSPC (nothing written).
    NoSpace,
    /// The call fails with EIO (nothing written).
    Eio,
    /// A write stores only its first half, then fails with EIO; other calls fail with EIO.
    ShortWrite,
}

/// An `Io` that counts operations and fails chosen ones; everything else is
/// passed to `OsIo`. Public (hidden from docs) for the fault-injection tests.
#[doc(hidden)]
#[derive(Debug)]
pub struct FaultyIo {
    ops: AtomicU64,
    fail_at: AtomicU64,
    sticky: AtomicU32,
    fault: parking_lot::Mutex<Fault>,
    injected: AtomicU64,
}

impl Default for FaultyIo {
    fn default() -> Self {
        FaultyIo {
            ops: AtomicU64::new(0),
            fail_at: AtomicU64::new(u64::MAX),
            sticky: AtomicU32::new(0),
            fault: parking_lot::Mutex::new(Fault::Eio),
            injected: AtomicU64::new(0),
        }
    }
}

impl FaultyIo {
    /// A new injector that fails nothing (yet).
    pub fn new() -> Arc<FaultyIo> {
        Arc::new(FaultyIo::default())
    }
    /// Operations performed so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }
    /// How many operations failed by injection.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }
    /// Fails operation number `n` (0-based, counted from now on) with
    /// `fault`; with `sticky`, every later operation fails too (a dead disk).
    pub fn fail_at(&self, n: u64, fault: Fault, sticky: bool) {
        *self.fault.lock() = fault;
        self.sticky.store(u32::from(sticky), Ordering::SeqCst);
        self.fail_at.store(self.ops() + n, Ordering::SeqCst);
    }
    /// Stops injecting.
    pub fn heal(&self) {
        self.fail_at.store(u64::MAX, Ordering::SeqCst);
    }

    fn check(&self) -> Option<Fault> {
        let n = self.ops.fetch_add(1, Ordering::SeqCst);
        let at = self.fail_at.load(Ordering::SeqCst);
        let hit = n == at || (self.sticky.load(Ordering::SeqCst) == 1 && n >= at);
        if hit {
            self.injected.fetch_add(1, Ordering::SeqCst);
            Some(*self.fault.lock())
        } else {
            None
        }
    }
}

fn injected(op: &'static str, path: &Path, f: Fault) -> Error {
    let errno = if f == Fault::NoSpace {
        libc::ENOSPC
    } else {
        libc::EIO
    };
    Error::io(op, path, std::io::Error::from_raw_os_error(errno))
}

impl Io for FaultyIo {
    fn reserve(&self, file: &File, path: &Path, old_len: u64, new_len: u64) -> Result<()> {
        match self.check() {
            Some(f) => Err(injected("reserving space", path, f)),
            None => OsIo.reserve(file, path, old_len, new_len),
        }
    }
    fn sync_data(&self, file: &File, path: &Path) -> Result<()> {
        match self.check() {
            // A failed fsync: the data may or may not have reached the disk.
            Some(f) => Err(injected("syncing", path, f)),
            None => OsIo.sync_data(file, path),
        }
    }
    fn set_len(&self, file: &File, path: &Path, len: u64) -> Result<()> {
        match self.check() {
            Some(f) => Err(injected("setting the file length", path, f)),
            None => OsIo.set_len(file, path, len),
        }
    }
    fn write_at(&self, file: &File, path: &Path, buf: &[u8], off: u64) -> Result<()> {
        match self.check() {
            Some(Fault::ShortWrite) => {
                OsIo.write_at(file, path, &buf[..buf.len() / 2], off)?;
                Err(injected("writing", path, Fault::ShortWrite))
            }
            Some(f) => Err(injected("writing", path, f)),
            None => OsIo.write_at(file, path, buf, off),
        }
    }
    fn write_vectored_at(&self, file: &File, path: &Path, bufs: &[&[u8]], off: u64) -> Result<()> {
        match self.check() {
            Some(Fault::ShortWrite) => {
                let half: usize = bufs.iter().map(|b| b.len()).sum::<usize>() / 2;
                let mut written = 0usize;
                let mut at = off;
                for b in bufs {
                    let n = b.len().min(half - written);
                    OsIo.write_at(file, path, &b[..n], at)?;
                    written += n;
                    at += n as u64;
                    if written == half {
                        break;
                    }
                }
                Err(injected("writing", path, Fault::ShortWrite))
            }
            Some(f) => Err(injected("writing", path, f)),
            None => OsIo.write_vectored_at(file, path, bufs, off),
        }
    }
    fn create(&self, path: &Path) -> Result<File> {
        match self.check() {
            Some(f) => Err(injected("creating", path, f)),
            None => OsIo.create(path),
        }
    }
    fn write_all(&self, file: &mut File, path: &Path, buf: &[u8]) -> Result<()> {
        match self.check() {
            Some(Fault::ShortWrite) => {
                OsIo.write_all(file, path, &buf[..buf.len() / 2])?;
                Err(injected("writing", path, Fault::ShortWrite))
            }
            Some(f) => Err(injected("writing", path, f)),
            None => OsIo.write_all(file, path, buf),
        }
    }
    fn sync_all(&self, file: &File, path: &Path) -> Result<()> {
        match self.check() {
            Some(f) => Err(injected("syncing", path, f)),
            None => OsIo.sync_all(file, path),
        }
    }
    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        match self.check() {
            Some(f) => Err(injected("renaming", to, f)),
            None => OsIo.rename(from, to),
        }
    }
    fn sync_dir(&self, dir: &Path) -> Result<()> {
        match self.check() {
            Some(f) => Err(injected("syncing the directory", dir, f)),
            None => OsIo.sync_dir(dir),
        }
    }
}

/// An `Io` that remembers what the disk would hold after a power loss:
/// the content of each file as of its last successful sync, and renames only
/// once the directory was synced. [`PowerLossIo::cut`] then rewrites the
/// files the way a power cut leaves them: every 512-byte sector written since
/// the file's last sync independently holds the old bytes, the new bytes or
/// garbage where the write changed them (writes reach the disk partially and
/// in any order; bytes rewritten with their own value survive, the
/// "powersafe overwrite" property SQLite also assumes), the length
/// lands anywhere between the synced and the current one, and renames whose
/// directory was not synced are undone. Public (hidden from docs) for the
/// power-loss tests; keep files small, each sync copies the whole file.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct PowerLossIo {
    state: parking_lot::Mutex<PowerLossState>,
}

#[derive(Debug, Default)]
struct PowerLossState {
    /// Durable content per path (absent: never synced → empty after a cut).
    durable: std::collections::HashMap<std::path::PathBuf, Vec<u8>>,
    /// Renames not yet made durable by a directory sync: (from, to, durable content of `to` before).
    pending_renames: Vec<(std::path::PathBuf, std::path::PathBuf, Option<Vec<u8>>)>,
}

impl PowerLossIo {
    /// A new simulator.
    pub fn new() -> Arc<PowerLossIo> {
        Arc::new(PowerLossIo::default())
    }

    fn snapshot(&self, path: &Path) {
        if let Ok(bytes) = std::fs::read(path) {
            self.state.lock().durable.insert(path.to_path_buf(), bytes);
        }
    }

    /// Applies a power cut to every file this I/O layer has touched;
    /// `rand` supplies random numbers. Returns how many sectors were lost or torn.
    pub fn cut(&self, mut rand: impl FnMut() -> u64) -> u64 {
        let mut st = self.state.lock();
        // undo renames the directory never made durable
        let pending: Vec<_> = st.pending_renames.drain(..).rev().collect();
        for (from, to, before) in pending {
            if let Ok(now) = std::fs::read(&to) {
                let _ = std::fs::write(&from, now);
            }
            if let Some(moved) = st.durable.remove(&to) {
                st.durable.insert(from, moved);
            }
            match before {
                Some(b) => {
                    let _ = std::fs::write(&to, &b);
                    st.durable.insert(to, b);
                }
                None => {
                    let _ = std::fs::remove_file(&to);
                }
            }
        }
        let mut damaged = 0;
        for (path, durable) in &st.durable {
            let Ok(current) = std::fs::read(path) else {
                continue;
            };
            if &current == durable {
                continue;
            }
            let (lo, hi) = (
                durable.len().min(current.len()),
                durable.len().max(current.len()),
            );
            let len = lo + (rand() as usize) % (hi - lo + 1);
            let mut out = vec![0u8; len];
            for start in (0..len).step_by(512) {
                let end = (start + 512).min(len);
                let old = |i: usize| durable.get(i).copied().unwrap_or(0);
                let new = |i: usize| current.get(i).copied().unwrap_or(0);
                let same = (start..end).all(|i| old(i) == new(i));
                let choice = if same { 0 } else { rand() % 4 };
                for (k, b) in out[start..end].iter_mut().enumerate() {
                    let i = start + k;
                    *b = match choice {
                        0 | 1 => old(i), // the write never reached the disk
                        2 => new(i),     // it did
                        // torn: bytes the write changed are garbage; bytes it
                        // rewrote with the same value keep it ("powersafe
                        // overwrite", as SQLite assumes of modern disks)
                        _ if old(i) == new(i) => old(i),
                        _ => rand() as u8,
                    };
                }
                damaged += u64::from(!same && choice != 2);
            }
            let _ = std::fs::write(path, &out);
        }
        damaged
    }
}

impl Io for PowerLossIo {
    fn reserve(&self, file: &File, path: &Path, old_len: u64, new_len: u64) -> Result<()> {
        OsIo.reserve(file, path, old_len, new_len)
    }
    fn sync_data(&self, file: &File, path: &Path) -> Result<()> {
        OsIo.sync_data(file, path)?;
        self.snapshot(path);
        Ok(())
    }
    fn set_len(&self, file: &File, path: &Path, len: u64) -> Result<()> {
        OsIo.set_len(file, path, len)
    }
    fn write_at(&self, file: &File, path: &Path, buf: &[u8], off: u64) -> Result<()> {
        OsIo.write_at(file, path, buf, off)
    }
    fn write_vectored_at(&self, file: &File, path: &Path, bufs: &[&[u8]], off: u64) -> Result<()> {
        OsIo.write_vectored_at(file, path, bufs, off)
    }
    fn create(&self, path: &Path) -> Result<File> {
        OsIo.create(path)
    }
    fn write_all(&self, file: &mut File, path: &Path, buf: &[u8]) -> Result<()> {
        OsIo.write_all(file, path, buf)
    }
    fn sync_all(&self, file: &File, path: &Path) -> Result<()> {
        OsIo.sync_all(file, path)?;
        self.snapshot(path);
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let before = self.state.lock().durable.get(to).cloned();
        OsIo.rename(from, to)?;
        let mut st = self.state.lock();
        if let Some(d) = st.durable.remove(from) {
            st.durable.insert(to.to_path_buf(), d);
        }
        st.pending_renames
            .push((from.to_path_buf(), to.to_path_buf(), before));
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> Result<()> {
        OsIo.sync_dir(dir)?;
        self.state
            .lock()
            .pending_renames
            .retain(|(_, to, _)| to.parent() != Some(dir));
        Ok(())
    }
}
