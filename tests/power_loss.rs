//! Power loss, not just a process kill: at a random point the store is
//! abandoned and everything the OS had not yet made durable is mangled —
//! each 512-byte sector past the durable offset is kept, zeroed or replaced
//! by garbage, independently (writes reach the disk in any order), and the
//! file may lose its unsynced length. After reopening, every payload synced
//! before the cut reads back exactly (or a newer version of it does), and no
//! unsynced payload ever shows up as wrong bytes.
mod common;

use common::*;
use payloadstore::{Options, PayloadStore};
use std::collections::HashMap;

const SIZES: &[usize] = &[0, 40, 700, 3000, 40_000, 150_000];

/// One version of an id: its bytes (None = deleted) and whether a sync covered it.
struct Version {
    data: Option<Vec<u8>>,
    synced: bool,
}

fn mangle_unsynced(path: &std::path::Path, durable: u64, r: &mut Rng) -> (u64, u64) {
    let mut log = std::fs::read(path).unwrap();
    let len = log.len() as u64;
    assert!(durable <= len);
    let (mut zeroed, mut garbled) = (0, 0);
    let mut at = durable;
    while at < len {
        let end = ((at / 512 + 1) * 512).min(len);
        match r.below(4) {
            0 | 1 => {}
            2 => {
                log[at as usize..end as usize].fill(0);
                zeroed += 1;
            }
            _ => {
                for b in &mut log[at as usize..end as usize] {
                    *b = r.next() as u8;
                }
                garbled += 1;
            }
        }
        at = end;
    }
    if r.below(10) < 3 && len > durable {
        log.truncate((durable + r.below(len - durable + 1)) as usize);
    }
    std::fs::write(path, &log).unwrap();
    (zeroed, garbled)
}

#[test]
fn hundreds_of_power_cuts() {
    let t = TempDir::new("power");
    let mut total_mangled = 0;
    for round in 0..300u64 {
        let mut r = Rng(round * 7919 + 1);
        let dir = t.path().join(format!("r{round}"));
        let s = PayloadStore::open_with_options(
            &dir,
            Options::default().auto_checkpoint_bytes(300_000),
        )
        .unwrap();
        let mut versions: HashMap<u128, Vec<Version>> = HashMap::new();
        let steps = 1 + r.below(80);
        for step in 0..steps {
            let id = u128::from(r.below(16));
            match r.below(20) {
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
                _ => {
                    s.save_index().unwrap();
                    versions
                        .values_mut()
                        .flatten()
                        .for_each(|v| v.synced = true);
                }
            }
        }
        let durable = s.durable_offset();
        s.abandon();
        let (z, g) = mangle_unsynced(&dir.join("payload.data"), durable, &mut r);
        total_mangled += z + g;

        let s = PayloadStore::open(&dir)
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
