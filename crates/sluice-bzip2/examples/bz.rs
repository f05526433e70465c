//! `cargo run --release -p sluice-bzip2 --example bz -- FILE [LEVEL] [REPEATS]`: compresses
//! FILE, writes FILE.sluice.bz2, and prints the median wall time of REPEATS runs (default 5).

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: bz FILE [LEVEL] [REPEATS]");
    let level: u32 = args.next().map_or(9, |l| l.parse().expect("level 1..9"));
    let repeats: usize = args.next().map_or(5, |r| r.parse().expect("a count"));
    let input = std::fs::read(&path).expect("reads the input");
    let mut secs = Vec::new();
    let mut out = Vec::new();
    for _ in 0..repeats.max(1) {
        let started = Instant::now();
        out = sluice_bzip2::compress(&input, level);
        secs.push(started.elapsed().as_secs_f64());
    }
    secs.sort_by(f64::total_cmp);
    std::fs::write(format!("{path}.sluice.bz2"), &out).expect("writes the output");
    println!(
        "{path}: {} -> {} bytes, median {:.3} s (min {:.3}, max {:.3}) over {} runs",
        input.len(),
        out.len(),
        secs[secs.len() / 2],
        secs[0],
        secs[secs.len() - 1],
        secs.len()
    );
}
