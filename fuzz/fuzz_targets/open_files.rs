//! (a) Open a directory whose log and index files are arbitrary bytes — or
//! well-formed records (valid checksums) with arbitrary damage applied — and
//! read everything the store claims to hold. Errors are fine; panics, hangs
//! and wrong bytes are not. With the DiskHash backend the damage can also hit
//! a real `index.dh` built for the log.
#![no_main]
use libfuzzer_sys::fuzz_target;
use payloadstore::format::{self, LogHeader, RecordHeader, RecordKind};
use payloadstore::{CompressionType, IndexBackend, Options, PayloadStore};

fn dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ps-fuzz-open-{}", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    // data = mode byte, u16 split point, log material `a`, damage/index material `b`
    let (mode, rest) = (data[0], &data[1..]);
    let body = &rest[2..];
    let cut = usize::from(u16::from_le_bytes([rest[0], rest[1]])) % (body.len() + 1);
    let (a, b) = body.split_at(cut);
    let d = dir();
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let mut expected: std::collections::HashMap<u128, Vec<u8>> = std::collections::HashMap::new();
    let log = if mode & 1 == 0 {
        a.to_vec() // arbitrary bytes
    } else {
        // well-formed records built from `a`, then damaged by `b`
        let salt = 0x5eed;
        let mut log = LogHeader {
            version: 1,
            salt,
            generation: 0,
            created: 0,
        }
        .encode(0)
        .to_vec();
        for chunk in a.chunks(37) {
            let id = u128::from(chunk[0] % 8);
            let h = RecordHeader {
                crc: 0,
                kind: if chunk.len() == 1 {
                    RecordKind::Delete
                } else {
                    RecordKind::Put
                },
                compression: CompressionType::None,
                id,
                stored_len: if chunk.len() == 1 {
                    0
                } else {
                    chunk.len() as u32
                },
                raw_len: if chunk.len() == 1 {
                    0
                } else {
                    chunk.len() as u32
                },
            };
            let body: &[u8] = if chunk.len() == 1 { &[] } else { chunk };
            let mut hb = h.encode();
            format::seal(salt, &mut hb, body);
            log.extend_from_slice(&hb);
            log.extend_from_slice(body);
            if chunk.len() == 1 {
                expected.remove(&id);
            } else {
                expected.insert(id, chunk.to_vec());
            }
        }
        // damage: pairs (position, xor) from b, optional truncation
        for p in b.chunks(3) {
            if p.len() == 3 && !log.is_empty() {
                let at = usize::from(u16::from_le_bytes([p[0], p[1]])) % log.len();
                log[at] ^= p[2];
            }
        }
        if mode & 2 != 0 && log.len() > 1 {
            log.truncate(log.len() - usize::from(mode >> 4) % log.len());
        }
        log
    };
    std::fs::write(d.join("payload.data"), &log).unwrap();
    let backend = if mode & 32 != 0 {
        IndexBackend::DiskHash
    } else {
        IndexBackend::HashMap
    };
    if mode & 4 != 0 {
        if backend == IndexBackend::DiskHash {
            // A real index.dh for this log (as far as it opens), damaged by
            // (position, xor) quadruples from `b`; then the log as it was.
            let build = Options::default().backend(backend).repair(true);
            if let Ok(s) = PayloadStore::open_with_options(&d, build) {
                let _ = s.close();
            }
            if let Ok(mut f) = std::fs::read(d.join("index.dh")) {
                for p in b.chunks(4) {
                    if p.len() == 4 && !f.is_empty() {
                        let at = u32::from_le_bytes([p[0], p[1], p[2], 0]) as usize % f.len();
                        f[at] ^= p[3];
                    }
                }
                std::fs::write(d.join("index.dh"), f).unwrap();
            }
            std::fs::write(d.join("payload.data"), &log).unwrap();
        } else {
            std::fs::write(d.join("index.ckpt"), b).unwrap();
        }
    }
    let opts = Options::default()
        .backend(backend)
        .repair(mode & 8 != 0)
        .read_only(mode & 64 != 0);
    // (a read-only DiskHash open of a log without its table is refused)
    let undamaged = mode & 1 == 1
        && b.len() < 3
        && mode & 2 == 0
        && !(backend == IndexBackend::DiskHash && mode & 64 != 0);
    match PayloadStore::open_with_options(&d, opts) {
        Ok(s) => {
            let mut ids = Vec::new();
            let _ = s.for_each(|id, (off, len, tag)| {
                ids.push(id);
                if let Ok(t) = CompressionType::try_from(tag) {
                    let _ = s.get_at_offset(off, len, t);
                }
            });
            for id in ids {
                if let Ok(Some(v)) = s.get(id) {
                    if undamaged {
                        assert_eq!(Some(&v), expected.get(&id), "undamaged log read back wrong");
                    }
                }
            }
            let _ = s.stats();
        }
        Err(e) => assert!(!undamaged, "an undamaged log failed to open: {e}"),
    }
    let _ = std::fs::remove_dir_all(&d);
});
