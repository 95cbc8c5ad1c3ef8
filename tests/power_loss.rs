//! Power loss, not just a process kill, simulated with the injectable I/O
//! layer: `PowerLossIo` records what each file held at its last successful
//! sync (and which renames a directory sync made durable). At a random point
//! the store is abandoned and `cut()` rewrites the files as a power cut
//! leaves them — every sector written since the last sync independently
//! keeps its old bytes, gets the new ones or garbage, the length lands
//! between the synced and the current one, unsynced renames are undone.
//! After reopening, every payload synced before the cut reads back exactly
//! (or a newer version of it does), and no unsynced payload ever shows up as
//! wrong bytes. Some rounds compact the store on the way.
mod common;

use common::*;
use payloadstore::io::PowerLossIo;
use payloadstore::{Options, PayloadStore};
use std::collections::HashMap;

const SIZES: &[usize] = &[0, 40, 700, 3000, 40_000, 150_000];

/// One version of an id: its bytes (None = deleted) and whether a sync covered it.
struct Version {
    data: Option<Vec<u8>>,
    synced: bool,
}

#[test]
fn hundreds_of_power_cuts() {
    let t = TempDir::new("power");
    let mut total_mangled = 0;
    for round in 0..300u64 {
        let mut r = Rng(round * 7919 + 1);
        let dir = t.path().join(format!("r{round}"));
        let io = PowerLossIo::new();
        let backend = backends()[round as usize % backends().len()];
        let opts = Options::default()
            .backend(backend)
            .auto_checkpoint_bytes(300_000)
            .io(io.clone());
        let s = PayloadStore::open_with_options(&dir, opts).unwrap();
        let mut versions: HashMap<u128, Vec<Version>> = HashMap::new();
        let steps = 1 + r.below(80);
        for step in 0..steps {
            let id = u128::from(r.below(16));
            match r.below(22) {
                0..=13 => {
                    let len = SIZES[r.below(SIZES.len() as u64) as usize];
                    let data = payload(id << 64 | u128::from(round << 16 | step), len);
                    s.append(id, &data, None).unwrap();
                    versions.entry(id).or_default().push(Version {
                        data: Some(data),
                        synced: false,
                    });
                }
                14 => {
                    if s.delete(id).unwrap() {
                        versions.entry(id).or_default().push(Version {
                            data: None,
                            synced: false,
                        });
                    }
                }
                15..=18 => {
                    s.sync().unwrap();
                    versions
                        .values_mut()
                        .flatten()
                        .for_each(|v| v.synced = true);
                }
                20 => {
                    // the new log is durable, and so is all it holds
                    s.compact().unwrap();
                    versions
                        .values_mut()
                        .flatten()
                        .for_each(|v| v.synced = true);
                }
                _ => {
                    s.save_index().unwrap();
                    versions
                        .values_mut()
                        .flatten()
                        .for_each(|v| v.synced = true);
                }
            }
        }
        // the simulator must never touch what the store reported durable
        let dur = s.durable_offset() as usize;
        let before = std::fs::read(dir.join("payload.data")).unwrap()[..dur].to_vec();
        s.abandon();
        total_mangled += io.cut(|| r.next());
        let after = std::fs::read(dir.join("payload.data")).unwrap();
        assert!(
            after.len() >= dur && after[..dur] == before[..],
            "round {round}: the cut changed durable bytes"
        );

        simulate_reboot(&dir.join(index_file(backend)));
        let s = PayloadStore::open_with_backend(&dir, backend)
            .unwrap_or_else(|e| panic!("round {round}: reopen after power cut: {e}"));
        let mut live = 0;
        for (id, vs) in &versions {
            let got = s
                .get(*id)
                .unwrap_or_else(|e| panic!("round {round}: id {id}: {e}"));
            // acceptable: the last synced version or anything newer; with no
            // synced version, also "absent"
            let first_ok = vs.iter().rposition(|v| v.synced).unwrap_or(0);
            let mut ok = vs[first_ok..].iter().any(|v| v.data == got);
            if !vs[first_ok].synced {
                ok |= got.is_none();
            }
            assert!(
                ok,
                "round {round}: id {id} read {:?} bytes, not a version that may survive",
                got.map(|g| g.len())
            );
            live += usize::from(got.is_some());
        }
        assert_eq!(s.len(), live, "round {round}");
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(
        total_mangled > 100,
        "the cuts mangled only {total_mangled} sectors"
    );
}
