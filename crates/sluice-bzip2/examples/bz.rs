//! Times the encoder on a file:
//!
//! `cargo run --release -p sluice-bzip2 --example bz -- FILE [LEVEL] [REPEATS] [--libbz2]`
//!
//! compresses FILE with `sluice_bzip2::compress` (or, with `--libbz2`, the `bzip2` crate's
//! encoder: libbz2-rs-sys, libbz2's algorithm), writes FILE.sluice.bz2 (FILE.libbz2.bz2),
//! and prints the median, min and max wall time of REPEATS runs (default 5).

use std::io::Read;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let libbz2 = args.iter().any(|a| a == "--libbz2");
    let mut args = args.into_iter().filter(|a| a != "--libbz2");
    let path = args
        .next()
        .expect("usage: bz FILE [LEVEL] [REPEATS] [--libbz2]");
    let level: u32 = args.next().map_or(9, |l| l.parse().expect("level 1..9"));
    let repeats: usize = args.next().map_or(5, |r| r.parse().expect("a count"));
    let input = std::fs::read(&path).expect("reads the input");
    let compress = |data: &[u8]| {
        if libbz2 {
            let mut out = Vec::new();
            bzip2::read::BzEncoder::new(data, bzip2::Compression::new(level))
                .read_to_end(&mut out)
                .expect("compresses");
            out
        } else {
            sluice_bzip2::compress(data, level)
        }
    };
    let mut secs = Vec::new();
    let mut out = Vec::new();
    for _ in 0..repeats.max(1) {
        let started = Instant::now();
        out = compress(&input);
        secs.push(started.elapsed().as_secs_f64());
    }
    secs.sort_by(f64::total_cmp);
    let suffix = if libbz2 { "libbz2" } else { "sluice" };
    std::fs::write(format!("{path}.{suffix}.bz2"), &out).expect("writes the output");
    println!(
        "{suffix} {path}: {} -> {} bytes, median {:.3} s (min {:.3}, max {:.3}) over {} runs",
        input.len(),
        out.len(),
        secs[secs.len() / 2],
        secs[0],
        secs[secs.len() - 1],
        secs.len()
    );
}
