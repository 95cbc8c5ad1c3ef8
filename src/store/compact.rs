//! Compaction: the log rewritten with only its live payloads, while readers
//! and writers go on.
//!
//! # How
//!
//! 1. **Copy.** A new log (`payload.data.tmp`, a new salt, generation n+1)
//!    is written through a second `Segment` with its own, new index: every
//!    record of the current log up to its end `E` that the index still names
//!    (checksum checked, resealed under the new salt). Readers and writers
//!    are not stopped; appends go on past `E` in the current log.
//! 2. **Catch up.** What was appended meanwhile, `[E, E')`, is copied
//!    record by record, tombstones included, in log order, so that
//!    replaying the new log gives what replaying the old one gives. Repeated
//!    while the tail is large; after a few rounds (appends keeping pace with
//!    the copy) the rest is copied 4 MiB at a time under the writer lock, so
//!    appends slow down and the tail shrinks.
//! 3. **Switch**, under the checkpoint, writer and sync locks (appends and
//!    syncs wait; readers do not): the last tail is copied, the new log is
//!    made durable, renamed over `payload.data` (and a new `index.dh` over
//!    the old one), the directory synced, and the new generation published
//!    to readers in one pointer swap. A reader still inside the old
//!    generation finishes there; its maps go when the last one leaves.
//!
//! The new log holds the same live payloads as the old one at the switch:
//! checked by comparing the two writers' live counts before anything is
//! renamed. A live payload whose record is damaged fails that check, and
//! compaction stops with `Error::Corrupt`, the store unchanged.
//!
//! # Crash safety
//!
//! Before the log's rename the directory holds the old log, whole (the new
//! `index.dh` or `index.ckpt` waits in `compact.tmp/`). After it, the new
//! log is complete and durable. A checkpoint or DiskHash table of the other generation
//! never matches (the salts differ), so the next open rebuilds it instead.
//! A writable open removes `payload.data.tmp` and `compact.tmp/`.

use super::*;

/// Catch-up rounds before the switch, at most.
const CATCH_UP_ROUNDS: usize = 4;
/// A tail at most this long is copied at the switch, writers waiting.
const SWITCH_TAIL: u64 = 4 << 20;
/// Where the new DiskHash table or checkpoint is built before it is renamed
/// into place.
pub(super) const TMP_DIR: &str = "compact.tmp";

/// The generation being written, and what its writer needs.
struct Next {
    gen: Gen,
    w: Writer,
    files: TmpFiles,
}

/// What a compaction that does not finish leaves behind, removed on drop.
struct TmpFiles {
    log: PathBuf,
    /// `compact.tmp/`: the new index (DiskHash table or checkpoint).
    dir: PathBuf,
    /// The log was renamed into place: it stays.
    log_installed: bool,
}

impl Drop for TmpFiles {
    fn drop(&mut self) {
        if !self.log_installed {
            let _ = io::remove_if_present(&self.log);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Next {
    fn create(store: &PayloadStore, old: &Gen) -> Result<Next> {
        let opts = &store.opts;
        let salt = loop {
            let s = sys::random_u64();
            if s != old.salt {
                break s;
            }
        };
        let header = LogHeader {
            version: format::FORMAT_VERSION,
            salt,
            generation: old.generation + 1,
            created: sys::unix_now(),
        };
        let files = TmpFiles {
            log: store.dir.join(format::LOG_TMP_FILE),
            dir: store.dir.join(TMP_DIR),
            log_installed: false,
        };
        let mut f = opts.io.create(&files.log)?;
        opts.io
            .write_all(&mut f, &files.log, &header.encode(LOG_HEADER_LEN))?;
        drop(f);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&files.log)
            .map_err(|e| Error::io("opening the new log", &files.log, e))?;
        // renamed (and `set_path`) at the switch
        let seg = Segment::new(
            files.log.clone(),
            file,
            true,
            opts.prefault,
            opts.io.clone(),
        );
        seg.map_upto(LOG_HEADER_LEN)?;
        seg.set_committed(LOG_HEADER_LEN);
        std::fs::create_dir_all(&files.dir)
            .map_err(|e| Error::io("creating the compaction directory", &files.dir, e))?;
        let (index, mut ix) = match opts.backend {
            IndexBackend::DiskHash => {
                let o = DiskIndex::create(&files.dir, salt, opts.io.clone())?;
                (Index::Disk(o.index), IndexWriter::Disk(o.writer))
            }
            IndexBackend::HashMap => {
                let (m, mw) = MemIndex::new(store.len() as u64);
                (Index::Mem(m), IndexWriter::Mem(mw))
            }
        };
        index.set_growth_thread(&mut ix, opts.index_growth_thread);
        Ok(Next {
            gen: Gen {
                salt,
                generation: header.generation,
                seg,
                index,
            },
            w: Writer {
                cur: WriteCursor {
                    end: LOG_HEADER_LEN,
                    capacity: LOG_HEADER_LEN,
                    prefaulted: 0,
                },
                ix,
                counters: Counters::default(),
                last_record: 0,
                next_warning: 0,
            },
            files,
        })
    }

    /// Appends one record of the old log (header and stored bytes, already
    /// checked) under the new salt, and applies it to the new index.
    fn push(&mut self, h: &RecordHeader, stored: &[u8]) -> Result<()> {
        let mut hb = h.encode();
        format::seal(self.gen.salt, &mut hb, stored);
        let g = &self.gen;
        let off = if stored.len() >= WRITE_SYSCALL_FROM {
            g.seg.append_vectored(&mut self.w.cur, &[&hb, stored])?
        } else {
            g.seg.append(&mut self.w.cur, &[&hb, stored])?
        };
        apply(&g.seg, &g.index, &mut self.w, off, h)
    }

    /// Copies the records of `[from, to)` of `old` that its index names.
    /// Returns where the first damage it stepped over starts, if any.
    fn copy_live(&mut self, old: &Gen, from: u64, to: u64) -> Result<Option<u64>> {
        let mode = Mode {
            watermark: u64::MAX,
            repair: true, // damage is stepped over; the live count catches a live loss
            writable: false,
        };
        let mut failed = None;
        let scan = recovery::scan(&old.seg, old.salt, from, to, mode, |pos, h| {
            if failed.is_some() || h.kind != RecordKind::Put {
                return;
            }
            let copied = old.locate(h.id).and_then(|at| {
                if at != Some(pos) {
                    return Ok(()); // replaced or deleted since
                }
                let stored = stored_bytes(old, pos, h);
                self.push(h, stored)
            });
            if let Err(e) = copied {
                failed = Some(e);
            }
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(scan.repaired.first().map(|d| d.0)),
        }
    }

    /// Copies every record of `old` from `from` on, in order, until `to`
    /// or until `budget` bytes are copied; returns where it stopped (a
    /// record boundary).
    fn copy_all(&mut self, old: &Gen, from: u64, to: u64, budget: u64) -> Result<u64> {
        let mut pos = from;
        while pos < to && pos - from < budget {
            let (h, stored) = old
                .seg
                .record(old.salt, pos)
                .map_err(|reason| Error::Corrupt {
                    offset: pos,
                    reason,
                })?;
            if h.kind != RecordKind::Padding {
                self.push(&h, stored)?;
            }
            pos += h.record_len();
        }
        Ok(pos)
    }

    /// HashMap: saves the new index's checkpoint in `compact.tmp/` (the
    /// log must be durable up to the writer's end); renamed into place at
    /// the switch, so the writers never wait for the snapshot. Returns the
    /// end it covers (0: DiskHash, which keeps its own state).
    fn save_checkpoint(&mut self, io: &dyn crate::io::Io) -> Result<u64> {
        let (Index::Mem(m), IndexWriter::Mem(mw)) = (&self.gen.index, &self.w.ix) else {
            return Ok(0);
        };
        let (slots, hi) = m.snapshot(mw);
        let header = CheckpointHeader {
            backend: format::CKPT_BACKEND_MEMORY,
            salt: self.gen.salt,
            covered_end: self.w.cur.end,
            last_record: self.w.last_record,
            saved_at: sys::unix_now(),
            slots: slots.len() as u64,
            counters: self.w.counters,
        };
        checkpoint::save(io, &self.files.dir, &header, &slots, &hi)?;
        Ok(self.w.cur.end)
    }

    /// Makes everything written so far durable, the header's watermark too.
    fn sync(&mut self) -> Result<()> {
        let end = self.w.cur.end;
        self.gen.seg.sync()?;
        self.gen.seg.write_watermark(end)?;
        self.gen.seg.sync()
    }
}

/// The stored bytes of an intact record the scan just read at `pos`.
fn stored_bytes<'a>(g: &'a Gen, pos: u64, h: &RecordHeader) -> &'a [u8] {
    g.seg
        .bytes(pos + RECORD_HEADER_LEN as u64, h.stored_len as usize)
        .expect("the scan just read this record")
}

impl PayloadStore {
    /// Rewrites the log with only its live payloads, reclaiming the space
    /// of replaced and deleted ones, while reads and appends go on.
    ///
    /// The copy runs beside readers and writers (it uses this thread);
    /// appends wait only for the switch at the end: the records appended
    /// during the last catch-up round (at most ~4 MiB unless appends outrun
    /// the copy), one fsync and two renames. Readers never wait. One
    /// compaction runs at a time; a second call waits for the first.
    ///
    /// Needs free disk space for the live bytes, and a second index while
    /// the new one is built (RAM for the HashMap backend; a second
    /// `index.dh` for DiskHash). Locations (`append`, `for_each`,
    /// `durable_offset`) refer to the log of their time: those from before
    /// a compaction are void after it (`get_at_offset` refuses most; a
    /// location that happens to name another intact record reads that one).
    /// `stats().recovery` keeps describing the open.
    ///
    /// Errors, each leaving the store as it was and usable: `ReadOnly`,
    /// `Poisoned`; `Corrupt` when a live payload's record is damaged
    /// (delete or replace it first; damage in dead records is dropped);
    /// `NoSpace`/`Io` from writing the new log. A failure after the new log
    /// is in place (renaming the DiskHash table, syncing the directory)
    /// poisons the handle: reopen it. A crash at any point leaves the old
    /// log or the new one, each whole (see `store/compact.rs`).
    ///
    /// ```
    /// # use payloadstore::*;
    /// # let dir = std::env::temp_dir().join(format!("ps-doc-{}-{}", std::process::id(), line!()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = PayloadStore::open(&dir)?;
    /// for round in 0..10u8 {
    ///     store.append(1, &[round; 1000], None)?; // nine of these are dead
    /// }
    /// let r = store.compact()?;
    /// assert!(r.bytes_after < r.bytes_before / 5);
    /// assert_eq!(store.get(1)?, Some(vec![9u8; 1000]));
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), payloadstore::Error>(())
    /// ```
    pub fn compact(&self) -> Result<CompactReport> {
        let started = Instant::now();
        self.writable()?;
        let _one = self.compacting.lock();
        let old = self.gen.load_full();
        let mut next = Next::create(self, &old)?;
        // `done`: the old log is copied up to here
        let mut done = old.seg.committed();
        let damaged = next.copy_live(&old, LOG_HEADER_LEN, done)?;
        for _ in 0..CATCH_UP_ROUNDS {
            let to = old.seg.committed();
            if to - done <= SWITCH_TAIL {
                break;
            }
            done = next.copy_all(&old, done, to, u64::MAX)?;
        }
        // Appends that keep pace with the copy would keep the tail long:
        // copy the rest a slice at a time under the writer lock, so that
        // appends slow down (each waits at most one slice) and the tail
        // shrinks.
        loop {
            let w = self.writer.lock();
            if w.cur.end - done <= SWITCH_TAIL {
                break;
            }
            done = next.copy_all(&old, done, w.cur.end, SWITCH_TAIL)?;
        }
        next.sync()?;
        // a table being grown is finished now rather than with writers waiting
        next.gen.index.settle(&mut next.w.ix, true);
        let covered = next.save_checkpoint(&*self.opts.io)?;
        // what was appended while the table and checkpoint were finished
        done = next.copy_all(&old, done, old.seg.committed(), u64::MAX)?;
        next.sync()?;

        // The switch: appends, syncs and checkpoints wait from here.
        let mut mark = self.checkpoint.lock();
        let mut w = self.writer.lock();
        let _sync = self.sync_lock.lock();
        self.writable()?;
        let bytes_before = w.cur.end;
        next.copy_all(&old, done, bytes_before, u64::MAX)?;
        if next.w.counters.live != w.counters.live {
            return Err(Error::Corrupt {
                offset: damaged.unwrap_or(0),
                reason: "a live payload's record is damaged (see verify); delete or replace it, then compact",
            });
        }
        next.sync()?;
        // (the tail rarely grows the new table; if it did, finish it)
        next.gen.index.settle(&mut next.w.ix, true);
        let io = &*self.opts.io;
        io.rename(&next.files.log, &self.dir.join(format::LOG_FILE))?;
        next.files.log_installed = true;
        // The directory now names the new log; this handle still writes the
        // old one until the swap below, so a failure here must stop it.
        let installed = (|| {
            let name = match self.opts.backend {
                IndexBackend::DiskHash => disk::FILE,
                IndexBackend::HashMap => format::INDEX_FILE,
            };
            io.rename(&next.files.dir.join(name), &self.dir.join(name))?;
            io.sync_dir(&self.dir)
        })();
        if let Err(e) = installed {
            self.poisoned.store(true, Ordering::Release);
            return Err(e);
        }
        let Next {
            mut gen,
            w: mut nw,
            files,
        } = next;
        gen.seg.set_path(self.dir.join(format::LOG_FILE));
        if let Index::Disk(d) = &mut gen.index {
            d.set_path(self.dir.join(disk::FILE));
        }
        drop(files); // the emptied compaction directory
        let bytes_after = nw.cur.end;
        let generation = gen.generation;
        nw.next_warning = w.next_warning;
        gen.seg.set_random_access();
        if bytes_after <= self.opts.huge_reads_max {
            gen.seg.huge_reads_below(bytes_after);
        }
        let old_gen = self.gen.swap(Arc::new(gen));
        let old_writer = std::mem::replace(&mut *w, nw);
        self.live.store(w.counters.live, Ordering::Relaxed);
        self.durable.store(bytes_after, Ordering::Release);
        self.watermark.store(bytes_after, Ordering::Relaxed);
        *mark = match covered {
            0 => CheckpointMark::default(),
            end => CheckpointMark {
                covered_end: end,
                saved_at: Some(sys::unix_now()),
            },
        };
        drop(_sync);
        drop(w);
        drop(mark);
        // Outside the locks: the old index (and any helper thread growing
        // it); the old maps go when the last reader of them leaves.
        drop(old_writer);
        drop(old_gen);
        drop(old);
        // DiskHash: its table is marked clean. (HashMap: the checkpoint
        // renamed into place covers all but the last tail.) The compaction
        // is done and durable either way: without a checkpoint the next
        // open rebuilds the index from the log, nothing worse.
        let saved = match self.opts.backend {
            IndexBackend::DiskHash => self.save_index(),
            IndexBackend::HashMap => Ok(()),
        };
        if let Err(e) = saved {
            self.emit(
                LogLevel::Warn,
                &format!("compaction done, but its index checkpoint failed: {e}"),
            );
        }
        Ok(CompactReport {
            payloads: self.len() as u64,
            bytes_before,
            bytes_after,
            generation,
            duration: started.elapsed(),
        })
    }
}
