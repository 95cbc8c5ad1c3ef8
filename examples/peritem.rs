use payloadstore::PayloadStore;
use std::time::Instant;
fn main() {
    let dir = std::path::PathBuf::from("/work/psdata/peritem");
    let _ = std::fs::remove_dir_all(&dir);
    let s = PayloadStore::open(&dir).unwrap();
    let mut x = 1u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pool: Vec<u8> = (0..32 << 20).map(|_| rnd() as u8).collect();
    let n = 1_000_000usize;
    let items: Vec<(u128, usize, usize)> = (0..n)
        .map(|_| {
            let len = 100 + (rnd() % 901) as usize;
            (
                (u128::from(rnd()) << 64) | u128::from(rnd()),
                rnd() as usize % (pool.len() - 1000),
                len,
            )
        })
        .collect();
    let bytes: usize = items.iter().map(|i| i.2).sum();
    let durable = std::env::args().nth(1).as_deref() == Some("durable");
    let t = Instant::now();
    if !durable {
        for &(id, o, l) in &items {
            s.append(id, &pool[o..o + l], None).unwrap();
        }
        s.sync().unwrap();
        let e = t.elapsed().as_secs_f64();
        println!(
            "per-item append: {:.0} MB/s {:.0} kops/s",
            bytes as f64 / 1e6 / e,
            n as f64 / 1e3 / e
        );
    }
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
    let s = PayloadStore::open(&dir).unwrap();
    let m = 200_000;
    let bytes: usize = items[..m].iter().map(|i| i.2).sum();
    let t = Instant::now();
    for (k, &(id, o, l)) in items[..m].iter().enumerate() {
        s.append(id, &pool[o..o + l], None).unwrap();
        if k % 1000 == 999 {
            s.sync().unwrap();
        }
    }
    let e = t.elapsed().as_secs_f64();
    println!(
        "per-item durable (sync/1000): {:.0} MB/s",
        bytes as f64 / 1e6 / e
    );
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
