//! Measures the converter's peak memory on one input, the way the Lambda holds it: the
//! snappy bytes, the decompressed text, and the Avro output all in memory.
//!
//! ```sh
//! cargo run --release -p avro-converter --example peak_memory -- generate /tmp/p.json.snappy 100000
//! cargo run --release -p avro-converter --example peak_memory -- convert /tmp/p.json.snappy
//! # every record rejected (PTS a string): the worst case
//! cargo run --release -p avro-converter --example peak_memory -- generate-rejects /tmp/r.json.snappy 100000
//! ```
//! `convert` prints the peak resident set size (`VmHWM` from `/proc/self/status`) before and
//! after converting, next to the decompressed input size.

use avro_converter::config::TimestampField;
use avro_converter::convert::Converter;
use avro_converter::sample::ndjson;
use avro_converter::schema::RecordSchema;
use sluice_codec::avro::ContainerCodec;
use sluice_partition::TimeUnit;

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [mode @ ("generate" | "generate-rejects"), path, n] => {
            let mut text = ndjson(n.parse()?, 1_715_679_000_000, 36);
            if mode == "generate-rejects" {
                // Every PTS a string: every record is rejected (the worst case for memory).
                text = String::from_utf8(text)?
                    .replace("\"PTS\":", "\"PTS\":\"x")
                    .replace(",\"event_id\"", "\",\"event_id\"")
                    .into_bytes();
            }
            std::fs::write(path, sluice_codec::snappy::compress_framed(&text))?;
            println!("{path}: {n} records, {:.1} MB JSON", mb(text.len() as u64));
        }
        ["convert", path] => {
            let converter = Converter::new(
                RecordSchema::player_event(),
                ContainerCodec::Snappy,
                TimestampField {
                    name: "PTS".into(),
                    unit: TimeUnit::Milliseconds,
                },
                1 << 30,
                "avro/",
            );
            let compressed = std::fs::read(path)?;
            let before = peak_rss_bytes();
            let conversion = converter.convert(&compressed, path)?;
            let after = peak_rss_bytes();
            let decompressed = conversion.decompressed_bytes as u64;
            let avro: usize = conversion.files.iter().map(|f| f.bytes.len()).sum();
            println!(
                "input {:.1} MB snappy, {:.1} MB JSON, {} records → {:.1} MB Avro in {} files, {} rejected",
                mb(compressed.len() as u64),
                mb(decompressed),
                conversion.converted(),
                mb(avro as u64),
                conversion.files.len(),
                conversion.rejects.len()
            );
            println!(
                "peak RSS {:.1} MB before converting, {:.1} MB after: {:.2}× the decompressed input",
                mb(before),
                mb(after),
                after as f64 / decompressed as f64
            );
        }
        _ => {
            return Err(
                "usage: peak_memory generate|generate-rejects PATH N | peak_memory convert PATH"
                    .into(),
            );
        }
    }
    Ok(())
}
