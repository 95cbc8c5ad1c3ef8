//! Kill -9 a writer at random moments; every id it reported as synced must
//! read back byte-identical after reopen.
//!
//! The child is this test binary re-run with `PS_CRASH_CHILD=<dir>`: it
//! appends batches, syncs, then writes the batch's ids to a side file and
//! prints a line. The parent kills it after a random number of lines, so the
//! kill lands while the child is in the middle of appending.
mod common;

use common::*;
use payloadstore::{CompressionType, IndexBackend, IndexSource, Options, PayloadStore, SyncPolicy};
use std::fmt::Display;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Ids with bit 63 set are the many small inserts that grow the index.
const SMALL: u128 = 1 << 63;

fn len_of(id: u128) -> usize {
    if id & SMALL != 0 {
        8 + (id % 24) as usize
    } else {
        [20, 900, 3000, 40_000, 150_000][(id % 5) as usize]
    }
}

fn backend_of(name: &str) -> IndexBackend {
    match name {
        "DiskHash" => IndexBackend::DiskHash,
        _ => IndexBackend::HashMap,
    }
}

/// Runs this test binary's test `name` alone, in a child process with `env`.
fn spawn_child(name: &str, env: &[(&str, String)], stdout: Stdio) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .stdout(stdout)
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Spawns the crash child test `name` for one round: `var` carries the
/// store directory, with the round and the backend beside it.
fn spawn_round(name: &str, var: &str, dir: &Path, round: u128, backend: IndexBackend) -> Child {
    let env = [
        (var, dir.display().to_string()),
        ("PS_CRASH_ROUND", round.to_string()),
        ("PS_CRASH_BACKEND", format!("{backend:?}")),
    ];
    spawn_child(name, &env, Stdio::piped())
}

/// A child's open of the store its parent just closed. The parent's lock
/// can outlive its handle for a moment: `flock` locks belong to the open
/// file, and a process that another test thread is spawning at that instant
/// holds a copy of every descriptor until it execs (`O_CLOEXEC` closes them
/// only then). So `Locked` is retried for up to 10 s; any other error is
/// printed on stdout, where the parent collects it, before the child fails.
fn child_open(dir: &str, opts: Options) -> PayloadStore {
    let started = std::time::Instant::now();
    loop {
        match PayloadStore::open_with_options(dir, opts.clone()) {
            Ok(s) => return s,
            Err(payloadstore::Error::Locked { .. })
                if started.elapsed() < std::time::Duration::from_secs(10) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => {
                println!("child: open failed: {e}");
                panic!("child: open failed: {e}");
            }
        }
    }
}

/// A crash child's side of `spawn_round`: the store directory, round and
/// backend, the side file `<dir>.<side>` it reports ids to, and its stdout.
struct Reporter {
    dir: String,
    round: u128,
    backend: IndexBackend,
    side: std::fs::File,
    out: std::io::Stdout,
}

impl Reporter {
    /// `None` unless this process was spawned as a child with `var` set.
    fn from_env(var: &str, side: &str) -> Option<Reporter> {
        let dir = std::env::var(var).ok()?;
        let side = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(format!("{dir}.{side}"))
            .unwrap();
        Some(Reporter {
            round: std::env::var("PS_CRASH_ROUND").unwrap().parse().unwrap(),
            backend: backend_of(&std::env::var("PS_CRASH_BACKEND").unwrap()),
            dir,
            side,
            out: std::io::stdout(),
        })
    }

    /// Appends `ids` to the side file (after they are safe).
    fn record(&mut self, ids: impl IntoIterator<Item = u128>) {
        let lines: String = ids.into_iter().map(|i| format!("{i}\n")).collect();
        self.side.write_all(lines.as_bytes()).unwrap();
    }

    /// Prints one line for the parent.
    fn say(&mut self, line: impl Display) {
        writeln!(self.out, "{line}").unwrap();
        self.out.flush().unwrap();
    }
}

/// Reads the child's stdout until it has printed `kill_after` numbered
/// lines (handing every other line to `other`), then kills it with SIGKILL.
fn kill_after_lines(
    child: &mut Child,
    kill_after: u64,
    round: impl Display,
    mut other: impl FnMut(&str),
) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = 0;
    // the child's other output (its test harness reports a panic there)
    let mut said = Vec::new();
    while seen < kill_after {
        match lines.next() {
            Some(Ok(l)) if l.parse::<u64>().is_ok() => seen += 1,
            Some(Ok(l)) => {
                other(&l);
                said.push(l);
            }
            Some(_) => {}
            None => panic!(
                "child exited early in round {round}, after {seen} lines, {:?}; it said:\n{}",
                child.wait(),
                said.join("\n")
            ),
        }
    }
    // The child is appending its next batch now.
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
}

/// The ids a child wrote to its side file, one per line.
fn ids_in(side: &str) -> Vec<u128> {
    std::fs::read_to_string(side)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// Every id in `ids` reads back as `want(id)`.
fn assert_intact(
    s: &PayloadStore,
    ids: &[u128],
    want: impl Fn(u128) -> Vec<u8>,
    round: impl Display,
) {
    for &id in ids {
        let got = s
            .get(id)
            .unwrap_or_else(|e| panic!("round {round}: id {id}: {e}"));
        assert_eq!(got, Some(want(id)), "round {round}: id {id}");
    }
}

/// The child's body: runs only when spawned by `kill_9_during_appends`.
#[test]
fn crash_child() {
    let Some(mut r) = Reporter::from_env("PS_CRASH_CHILD", "synced") else {
        return;
    };
    let round = r.round;
    let policy = if round.is_multiple_of(2) {
        SyncPolicy::Manual
    } else {
        SyncPolicy::GroupCommit
    };
    let s = child_open(
        &r.dir,
        Options::default()
            .backend(r.backend)
            .sync_policy(policy)
            .auto_checkpoint_bytes(2 << 20),
    );
    for batch in 0u128.. {
        let mut ids = Vec::new();
        for k in 0..8u128 {
            let id = (round << 64) | (batch << 8) | k;
            s.append(id, &payload(id, len_of(id)), None).unwrap();
            ids.push(id);
        }
        // many small inserts: the index grows (DiskHash splits) while the kill lands
        for k in 0..120u128 {
            let id = SMALL | (round << 40) | (batch << 8) | k;
            s.append(id, &payload(id, len_of(id)), None).unwrap();
            ids.push(id);
        }
        // also overwrite an id of this round now and then (last write wins)
        if batch % 7 == 3 {
            let id = (round << 64) | ((batch - 3) << 8);
            s.append(id, &payload(id, len_of(id)), None).unwrap();
        }
        s.sync().unwrap();
        r.record(ids);
        r.say(batch);
    }
}

#[test]
fn kill_9_during_appends() {
    if std::env::var("PS_CRASH_CHILD").is_ok() {
        return;
    }
    for backend in backends() {
        kill_9_rounds(backend);
    }
}

fn kill_9_rounds(backend: IndexBackend) {
    let t = TempDir::new("crash");
    let dir = t.store();
    let side = format!("{}.synced", dir.display());
    let mut rng = Rng(0xC0FFEE);
    let rounds = 12;
    for round in 0..rounds {
        let mut child = spawn_round("crash_child", "PS_CRASH_CHILD", &dir, round, backend);
        let kill_after = 1 + rng.below(60);
        kill_after_lines(&mut child, kill_after, round, |_| {});

        let synced = ids_in(&side);
        assert!(synced.len() as u64 >= kill_after * 128);
        let s = PayloadStore::open_with_backend(&dir, backend).unwrap();
        assert_intact(&s, &synced, |id| payload(id, len_of(id)), round);
        let r = s.stats().recovery;
        assert!(r.repaired_regions.is_empty());
        assert_eq!(
            r.source,
            IndexSource::Checkpoint,
            "round {round}: no full scan"
        );
        match backend {
            // the tail after the last checkpoint (every 2 MiB)
            IndexBackend::HashMap => assert!(
                r.replayed_records > 0 && r.replayed_bytes <= 3 << 20,
                "round {round}: replayed {} bytes",
                r.replayed_bytes
            ),
            // the index is updated in place with every append: at most the
            // record the kill interrupted is left to replay
            IndexBackend::DiskHash => assert!(
                r.replayed_records <= 1,
                "round {round}: replayed {}",
                r.replayed_records
            ),
        }
        // every payload in the store, synced or not, is intact
        let mut n = 0;
        s.for_each(|id, _| {
            assert_eq!(s.get(id).unwrap().unwrap(), payload(id, len_of(id)));
            n += 1;
        })
        .unwrap();
        assert_eq!(n, s.len(), "round {round}: for_each and len agree");
        drop(s);
    }
}

/// The child's body for `kill_9_during_an_index_rebuild`: opens the store
/// with DiskHash, which builds index.dh from the log.
#[test]
fn rebuild_child() {
    let Ok(dir) = std::env::var("PS_REBUILD_CHILD") else {
        return;
    };
    let budget: u64 = std::env::var("PS_REBUILD_BUDGET").unwrap().parse().unwrap();
    let s = child_open(
        &dir,
        Options::default()
            .backend(IndexBackend::DiskHash)
            .rebuild_memory_bytes(budget),
    );
    println!("built {}", s.len());
}

/// Kill -9 while index.dh is being built from the log (record by record,
/// or in bulk passes): the next open still finds every payload.
#[test]
fn kill_9_during_an_index_rebuild() {
    if std::env::var("PS_REBUILD_CHILD").is_ok() {
        return;
    }
    let t = TempDir::new("crash-rebuild");
    let dir = t.store();
    let n = 300_000u128;
    {
        let s = PayloadStore::open_with_backend(&dir, IndexBackend::HashMap).unwrap();
        let items: Vec<(u128, Vec<u8>)> = (0..n).map(|i| (i * 7919, payload(i, 16))).collect();
        for chunk in items.chunks(10_000) {
            let refs: Vec<(u128, &[u8])> =
                chunk.iter().map(|(id, d)| (*id, d.as_slice())).collect();
            s.append_batch(&refs, None).unwrap();
        }
        s.close().unwrap();
    }
    let mut rng = Rng(0xBEEF);
    for round in 0..6u64 {
        let budget = if round % 2 == 0 { u64::MAX } else { 64 << 10 };
        let env = [
            ("PS_REBUILD_CHILD", dir.display().to_string()),
            ("PS_REBUILD_BUDGET", budget.to_string()),
        ];
        let mut child = spawn_child("rebuild_child", &env, Stdio::null());
        // a random moment of the build (fault injection, not synchronization:
        // whether the kill lands mid-build or after it, the checks below hold)
        std::thread::sleep(std::time::Duration::from_millis(20 + rng.below(300)));
        let _ = child.kill();
        let _ = child.wait();
        let s = PayloadStore::open_with_backend(&dir, IndexBackend::DiskHash)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(s.len() as u128, n, "round {round}");
        for i in (0..n).step_by(997) {
            assert_eq!(
                s.get(i * 7919).unwrap().unwrap(),
                payload(i, 16),
                "round {round}"
            );
        }
        s.close().unwrap();
        // the next round builds again
        std::fs::remove_file(dir.join(index_file(IndexBackend::DiskHash))).unwrap();
    }
}

/// The payload `crash_child_unsynced` appends for `id`.
fn unsynced_payload(id: u128) -> Vec<u8> {
    payload(id, 1000 + (id % 40_000) as usize)
}

/// Child of `kill_9_during_unsynced_appends`: appends without ever syncing,
/// so that the helper thread populates the log's pages ahead of the writer
/// (`Options::prefault`, active once 16 MiB are appended without a sync).
/// Prints `prefault` once that thread runs, then a line per batch after its
/// ids are in the side file.
#[test]
fn crash_child_unsynced() {
    let Some(mut r) = Reporter::from_env("PS_CRASH_UNSYNCED_CHILD", "acked") else {
        return;
    };
    let round = r.round;
    let s = child_open(&r.dir, Options::default().backend(r.backend));
    let mut told = false;
    for batch in 0u128.. {
        let mut ids = Vec::new();
        for k in 0..64u128 {
            let id = (round << 64) | (batch << 8) | k;
            s.append(id, &unsynced_payload(id), None).unwrap();
            ids.push(id);
        }
        r.record(ids);
        if !told && threads_named(PREFAULT_THREAD) > 0 {
            r.say("prefault");
            told = true;
        }
        r.say(batch);
    }
}

/// kill -9 a process that appends without syncing, while the prefault
/// thread populates pages ahead of it: a process crash loses nothing that
/// `append` returned, and the populated (zero) pages past the last record
/// read as the end of the log.
#[test]
fn kill_9_during_unsynced_appends() {
    if std::env::var("PS_CRASH_UNSYNCED_CHILD").is_ok() || std::env::var("PS_CRASH_CHILD").is_ok() {
        return;
    }
    for backend in backends() {
        let t = TempDir::new("crash-unsynced");
        let dir = t.store();
        let side = format!("{}.acked", dir.display());
        let mut rng = Rng(0xFACE);
        let mut saw_prefault = false;
        for round in 0..3u128 {
            let mut child = spawn_round(
                "crash_child_unsynced",
                "PS_CRASH_UNSYNCED_CHILD",
                &dir,
                round,
                backend,
            );
            // ~1.3 MB per batch: past 16 MiB after ~13 batches
            let kill_after = 20 + rng.below(30);
            kill_after_lines(&mut child, kill_after, round, |l| {
                saw_prefault |= l == "prefault";
            });
            let acked = ids_in(&side);
            assert!(acked.len() as u64 >= kill_after * 64);
            let s = PayloadStore::open_with_backend(&dir, backend).unwrap();
            assert_intact(&s, &acked, unsynced_payload, round);
            // the reopened handle appends after the recovered end
            let id = u128::MAX - round;
            s.append(id, b"after the crash", None).unwrap();
            s.close().unwrap();
        }
        if cfg!(target_os = "linux") {
            assert!(saw_prefault, "{backend:?}: the prefault thread never ran");
        }
    }
}

/// After a crash the log file still holds the preallocated space ahead of
/// the last record: a growth step, up to 1 GiB for a large log. Opening must
/// read the unsynced tail, not that space. Here the file is given 64 MiB of
/// it; after a read-only open (which cuts nothing) most of those pages are
/// still not in the page cache (the scan looks 1 MiB past the last record;
/// kernel readahead may add some).
#[test]
fn open_after_a_crash_does_not_read_the_preallocated_space() {
    if std::env::var("PS_CRASH_CHILD").is_ok() || std::env::var("PS_CRASH_UNSYNCED_CHILD").is_ok() {
        return;
    }
    for backend in backends() {
        let t = TempDir::new("crash-prealloc");
        let log = t.store().join("payload.data");
        let s = PayloadStore::open_with_backend(t.store(), backend).unwrap();
        let put = |s: &PayloadStore, ids: std::ops::Range<u128>| {
            for id in ids {
                s.append(id, &payload(id, 4000), Some(CompressionType::None))
                    .unwrap();
            }
        };
        put(&s, 0..2000);
        s.save_index().unwrap();
        put(&s, 2000..2300); // the tail after the checkpoint
        let end = s.appended_offset();
        s.abandon(); // as a killed process leaves it
        let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
        let file_len = f.metadata().unwrap().len() + (64 << 20);
        f.set_len(file_len).unwrap(); // zeros, as fallocate leaves them
        drop(f);
        evict(&log);
        let r = PayloadStore::open_with_options(
            t.store(),
            Options::default().backend(backend).read_only(true),
        )
        .unwrap();
        // the HashMap index replays the tail after its checkpoint; the
        // DiskHash table already holds it (a process crash keeps its pages)
        let replayed = r.stats().recovery.replayed_records;
        assert!(replayed == 300 || backend == IndexBackend::DiskHash && replayed <= 1);
        assert_eq!(r.stats().recovery.torn_tail_bytes, 0);
        let beyond = residency(&log)[((end + (1 << 20)) / 4096) as usize..].to_vec();
        let read = beyond.iter().filter(|&&b| b).count();
        assert!(
            read * 2 < beyond.len(),
            "{backend:?}: {read} of {} preallocated pages read at open",
            beyond.len()
        );
        for i in (0..2300).step_by(37) {
            assert_eq!(r.get(i).unwrap().unwrap(), payload(i, 4000));
        }
        drop(r);
        let s = PayloadStore::open_with_backend(t.store(), backend).unwrap();
        assert_eq!(s.len(), 2300);
        assert_eq!(
            std::fs::metadata(&log).unwrap().len(),
            end,
            "a writable open cuts the preallocated space"
        );
    }
}

/// The payload `crash_child_pipelined` appends for `id`: compressible,
/// 150-250 KB, so each batch of 12 has over 1 MiB to compress and is
/// written in runs while later runs compress.
fn pipelined_payload(id: u128) -> Vec<u8> {
    payload(id, 150_000 + (id % 100_000) as usize)
}

/// Child of `kill_9_during_pipelined_batches`: appends big compressible
/// batches, syncs each, then records its ids and prints a line.
#[test]
fn crash_child_pipelined() {
    let Some(mut r) = Reporter::from_env("PS_CRASH_PIPE_CHILD", "synced") else {
        return;
    };
    let round = r.round;
    let s = child_open(&r.dir, Options::default().backend(r.backend));
    for batch in 0u128.. {
        let datas: Vec<(u128, Vec<u8>)> = (0..12u128)
            .map(|k| {
                let id = (round << 64) | (batch << 8) | k;
                (id, pipelined_payload(id))
            })
            .collect();
        let refs: Vec<(u128, &[u8])> = datas.iter().map(|(id, d)| (*id, d.as_slice())).collect();
        s.append_batch(&refs, None).unwrap();
        s.sync().unwrap();
        r.record(datas.iter().map(|(id, _)| *id));
        r.say(batch);
    }
}

/// Kill -9 while big batches are compressed and written run by run: every
/// synced payload is intact, everything the store holds reads back right
/// (a batch the kill cut short may be partly there: never acknowledged,
/// never wrong), and the log verifies clean.
#[test]
fn kill_9_during_pipelined_batches() {
    if std::env::var("PS_CRASH_PIPE_CHILD").is_ok() {
        return;
    }
    for backend in backends() {
        let t = TempDir::new("crash-pipe");
        let dir = t.store();
        let side = format!("{}.synced", dir.display());
        let mut rng = Rng(0xBA7C4);
        for round in 0..6u128 {
            let mut child = spawn_round(
                "crash_child_pipelined",
                "PS_CRASH_PIPE_CHILD",
                &dir,
                round,
                backend,
            );
            kill_after_lines(&mut child, 1 + rng.below(6), round, |_| {});
            let s = PayloadStore::open_with_backend(&dir, backend)
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_intact(&s, &ids_in(&side), pipelined_payload, round);
            let mut ids = Vec::new();
            s.for_each(|id, _| ids.push(id)).unwrap();
            assert_eq!(ids.len(), s.len());
            assert_intact(&s, &ids, pipelined_payload, round);
            let report = s.verify().unwrap();
            assert!(report.is_clean(), "round {round}: {report:?}");
            s.close().unwrap();
        }
    }
}
