//! (b) `get_at_offset` with arbitrary locations: an error, or exactly the
//! payload that was stored at exactly that location.
#![no_main]
use libfuzzer_sys::fuzz_target;
use payloadstore::{CompressionType, PayloadStore};
use std::collections::HashMap;
use std::sync::OnceLock;

struct Fixture {
    store: PayloadStore,
    locs: HashMap<(u64, u32, u8), Vec<u8>>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("ps-fuzz-loc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let store = PayloadStore::open(&d).unwrap();
        let mut locs = HashMap::new();
        for i in 0..200u32 {
            let len = [0usize, 3, 100, 1500, 5000, 120_000][(i % 6) as usize];
            let data: Vec<u8> = (0..len)
                .map(|k| (k as u32 * 31 + i) as u8 % 17 + b'a')
                .collect();
            let loc = store.append(u128::from(i), &data, None).unwrap();
            locs.insert(loc, data);
        }
        Fixture { store, locs }
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 13 {
        return;
    }
    let f = fixture();
    let mut off = u64::from_le_bytes(data[0..8].try_into().unwrap());
    let len = u32::from_le_bytes(data[8..12].try_into().unwrap());
    let tag = data[12] % 4;
    if data.len() > 13 && data[13] & 1 == 1 {
        off %= f.store.appended_offset() + 64; // stay near real offsets
    }
    let Ok(codec) = CompressionType::try_from(tag) else {
        return;
    };
    match f.store.get_at_offset(off, len, codec) {
        Ok(v) => assert_eq!(
            Some(&v),
            f.locs.get(&(off, len, tag)),
            "bytes returned for a location that is not a record"
        ),
        Err(payloadstore::Error::InvalidLocation { .. }) => {}
        Err(e) => panic!("unexpected error {e}"),
    }
});
