//! Random sequences of API calls checked against a simple model (a HashMap),
//! including clean reopen, reopen without the checkpoint, crash-reopen and
//! compaction.
mod common;

use common::*;
use payloadstore::{CompressionType, Error, IndexBackend, Options, PayloadStore};
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Debug, Clone)]
enum Op {
    Append {
        id: u8,
        len: usize,
        codec: Option<u8>,
    },
    Delete {
        id: u8,
    },
    AppendBatch {
        ids: Vec<u8>,
        len: usize,
    },
    Get {
        id: u8,
    },
    GetAt {
        pick: usize,
        corrupt: Option<(i8, i8)>,
    },
    Sync,
    SaveIndex,
    Reopen,
    ReopenWithoutCheckpoint,
    Crash,
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..24, prop_oneof![0usize..64, 900usize..1200, 90_000usize..110_000], proptest::option::of(0u8..3))
            .prop_map(|(id, len, codec)| Op::Append { id, len, codec }),
        2 => (0u8..24).prop_map(|id| Op::Delete { id }),
        2 => (proptest::collection::vec(0u8..24, 0..12), prop_oneof![0usize..64, 900usize..1200, 90_000usize..110_000])
            .prop_map(|(ids, len)| Op::AppendBatch { ids, len }),
        4 => (0u8..24).prop_map(|id| Op::Get { id }),
        3 => (any::<usize>(), proptest::option::of((-40i8..40, -3i8..3))).prop_map(|(pick, corrupt)| Op::GetAt { pick, corrupt }),
        1 => Just(Op::Sync),
        1 => Just(Op::SaveIndex),
        1 => Just(Op::Reopen),
        1 => Just(Op::ReopenWithoutCheckpoint),
        1 => Just(Op::Crash),
        1 => Just(Op::Compact),
    ]
}

fn open(dir: &std::path::Path, backend: IndexBackend) -> PayloadStore {
    PayloadStore::open_with_options(
        dir,
        Options::default()
            .backend(backend)
            .auto_checkpoint_bytes(200_000),
    )
    .unwrap()
}

fn run(ops: Vec<Op>, backend: IndexBackend) {
    let t = TempDir::new("model");
    let dir = t.store();
    let mut store = Some(open(&dir, backend));
    let mut model: HashMap<u128, Vec<u8>> = HashMap::new();
    // every location ever handed out, with the bytes it must return
    let mut locs: Vec<((u64, u32, u8), Vec<u8>)> = Vec::new();
    let mut version = 0u128;
    for op in ops {
        let s = store.as_ref().unwrap();
        match op {
            Op::Append { id, len, codec } => {
                version += 1;
                let data = payload(u128::from(id) << 32 | version, len);
                let codec = codec.map(|c| CompressionType::try_from(c).unwrap());
                let loc = s.append(u128::from(id), &data, codec).unwrap();
                model.insert(u128::from(id), data.clone());
                locs.push((loc, data));
            }
            Op::AppendBatch { ids, len } => {
                let datas: Vec<(u128, Vec<u8>)> = ids
                    .iter()
                    .map(|&id| {
                        version += 1;
                        (u128::from(id), payload(u128::from(id) << 32 | version, len))
                    })
                    .collect();
                let refs: Vec<(u128, &[u8])> =
                    datas.iter().map(|(id, d)| (*id, d.as_slice())).collect();
                let locs_got = s.append_batch(&refs, None).unwrap();
                assert_eq!(locs_got.len(), datas.len());
                for ((id, data), loc) in datas.into_iter().zip(locs_got) {
                    locs.push((loc, data.clone()));
                    model.insert(id, data); // later items of the batch win
                }
            }
            Op::Delete { id } => {
                assert_eq!(
                    s.delete(u128::from(id)).unwrap(),
                    model.remove(&u128::from(id)).is_some()
                );
            }
            Op::Get { id } => {
                assert_eq!(
                    s.get(u128::from(id)).unwrap(),
                    model.get(&u128::from(id)).cloned()
                );
                assert_eq!(
                    s.has_payload(u128::from(id)),
                    model.contains_key(&u128::from(id))
                );
            }
            Op::GetAt { pick, corrupt } => {
                if locs.is_empty() {
                    continue;
                }
                let ((off, len, tag), data) = &locs[pick % locs.len()];
                let codec = CompressionType::try_from(*tag).unwrap();
                match corrupt {
                    None | Some((0, 0)) => {
                        assert_eq!(&s.get_at_offset(*off, *len, codec).unwrap(), data)
                    }
                    Some((d_off, d_len)) => {
                        let o = off.wrapping_add_signed(i64::from(d_off));
                        let l = len.wrapping_add_signed(i32::from(d_len));
                        match s.get_at_offset(o, l, codec) {
                            Err(Error::InvalidLocation { .. }) => {}
                            Ok(got) => {
                                // only acceptable if it is exactly another real location
                                let real = locs.iter().find(|(loc, _)| *loc == (o, l, *tag));
                                assert_eq!(
                                    Some(&got),
                                    real.map(|(_, d)| d),
                                    "fake location ({o}, {l}) returned bytes"
                                );
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            }
            Op::Sync => s.sync().unwrap(),
            Op::SaveIndex => s.save_index().unwrap(),
            Op::Reopen => {
                store.take().unwrap().close().unwrap();
                store = Some(open(&dir, backend));
            }
            Op::ReopenWithoutCheckpoint => {
                store.take().unwrap().close().unwrap();
                std::fs::remove_file(dir.join(index_file(backend))).unwrap();
                store = Some(open(&dir, backend));
            }
            Op::Crash => {
                store.take().unwrap().abandon();
                store = Some(open(&dir, backend));
            }
            Op::Compact => {
                let s = store.as_ref().unwrap();
                let r = s.compact().unwrap();
                assert_eq!(r.payloads, model.len() as u64);
                assert_eq!(s.stats().dead_bytes, 0);
                // earlier locations are void; the live payloads' new ones
                // must read back
                locs.clear();
                s.for_each(|id, loc| locs.push((loc, model[&id].clone())))
                    .unwrap();
            }
        }
        let s = store.as_ref().unwrap();
        assert_eq!(s.len(), model.len());
    }
    let s = store.unwrap();
    for (id, data) in &model {
        assert_eq!(s.get(*id).unwrap().as_ref(), Some(data));
    }
    // get_many: every possible id (present or not) and some twice, in
    // groups that straddle its internal batching
    let ids: Vec<u128> = (0..=255u128).chain((0..40).map(|i| i * 7 % 256)).collect();
    for (id, got) in ids.iter().zip(s.get_many(&ids)) {
        assert_eq!(got.unwrap(), model.get(id).cloned(), "get_many of {id}");
    }
    assert!(s.get_many(&[]).is_empty());
    let mut n = 0;
    s.for_each(|id, _| {
        assert!(model.contains_key(&id));
        n += 1;
    })
    .unwrap();
    assert_eq!(n, model.len());
    // after any sequence of operations, reopens and crashes, a scrub finds
    // nothing wrong and the index holds exactly the model's ids
    let r = s.verify().unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.index_entries, model.len() as u64);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn api_sequences_match_a_hashmap(ops in proptest::collection::vec(op(), 1..120)) {
        for backend in backends() {
            run(ops.clone(), backend);
        }
    }
}
