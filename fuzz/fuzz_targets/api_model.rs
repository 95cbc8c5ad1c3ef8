//! (c) Random sequences of API calls checked against a HashMap model,
//! including clean reopen, reopen without checkpoint, crash (abandon) and
//! compaction.
#![no_main]
use libfuzzer_sys::fuzz_target;
use payloadstore::{CompressionType, IndexBackend, PayloadStore};
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    let d = std::env::temp_dir().join(format!("ps-fuzz-model-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    // odd-length inputs run the DiskHash backend
    let (backend, index) = if data.len() % 2 == 1 {
        (IndexBackend::DiskHash, "index.dh")
    } else {
        (IndexBackend::HashMap, "index.ckpt")
    };
    let open = || PayloadStore::open_with_backend(&d, backend).unwrap();
    let mut s = Some(open());
    let mut model: HashMap<u128, Vec<u8>> = HashMap::new();
    for (step, op) in data.chunks(3).enumerate() {
        let st = s.as_ref().unwrap();
        let id = u128::from(op[0] % 16);
        let arg = op.get(1).copied().unwrap_or(0);
        match op.get(2).copied().unwrap_or(0) % 10 {
            0..=3 => {
                let len = [0usize, 7, 200, 1500, 130_000][usize::from(arg) % 5];
                let v: Vec<u8> = (0..len).map(|k| (k + step) as u8 % 29).collect();
                let codec = match arg / 5 % 4 {
                    0 => None,
                    t => Some(CompressionType::try_from(t - 1).unwrap()),
                };
                st.append(id, &v, codec).unwrap();
                model.insert(id, v);
            }
            4 => assert_eq!(st.delete(id).unwrap(), model.remove(&id).is_some()),
            5 if arg & 1 == 0 => assert_eq!(st.get(id).unwrap(), model.get(&id).cloned()),
            5 => {
                // a few ids from here on (wrapping), some twice
                let ids: Vec<u128> = (0..u128::from(arg % 24)).map(|k| (id + k / 2) % 16).collect();
                for (i, got) in ids.iter().zip(st.get_many(&ids)) {
                    assert_eq!(got.unwrap(), model.get(i).cloned());
                }
            }
            6 => st.sync().unwrap(),
            7 if arg & 3 == 3 => {
                let r = st.compact().unwrap();
                assert_eq!(r.payloads, model.len() as u64);
            }
            7 => st.save_index().unwrap(),
            8 => {
                s.take().unwrap().close().unwrap();
                if arg & 1 == 1 {
                    let _ = std::fs::remove_file(d.join(index));
                }
                s = Some(open());
            }
            _ => {
                s.take().unwrap().abandon();
                s = Some(open());
            }
        }
        assert_eq!(s.as_ref().unwrap().len(), model.len());
    }
    let st = s.unwrap();
    for (id, v) in &model {
        assert_eq!(st.get(*id).unwrap().as_ref(), Some(v));
    }
    let r = st.verify().unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.index_entries, model.len() as u64);
    drop(st);
    let _ = std::fs::remove_dir_all(&d);
});
