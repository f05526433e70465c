//! The Rust side of `just bench` (driven by `tools/sluice-bench/run.py`): generates the shared inputs and
//! times the functions' pure paths (the same library calls their handlers make) and the raw
//! codec crates, printing one JSON object per measurement on stdout.
//!
//! `sluice-bench gen <dir>` writes the converter input (`player.ndjson.snappy`, framed snappy
//! NDJSON of 100k player events) and the raw player-event lines the driver wraps into a 5 MiB
//! Kinesis batch (`kinesis-lines.ndjson`). `sluice-bench measure <dir> [repeats]` times:
//! converter (decompress → parse → coerce → partition → snappy Avro), archiver (Kinesis event
//! JSON → records → hour groups → payload → bzip2 -9 on 1 core and on all), counter files
//! (parse 100 × 100 + per-counter sums), and the codec limits (snappy decompress and bzip2
//! compress through sluice-codec vs the `snap` / `bzip2` crates directly).

use std::collections::HashMap;
use std::hint::black_box;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use avro_converter::config::TimestampField;
use avro_converter::convert::Converter;
use avro_converter::schema::RecordSchema;
use serde_json::value::RawValue;
use sluice_codec::avro::ContainerCodec;
use sluice_partition::TimeUnit;

/// 2024-05-14T09:30:00Z; 36 ms apart, 100k events span two UTC hours (as the function's bench).
const START_MS: i64 = 1_715_679_000_000;
const STEP_MS: i64 = 36;
const RECORDS: u64 = 100_000;
const KINESIS_BATCH_BYTES: usize = 5 * 1024 * 1024;
const KEY: &str = "incoming/player-bench.json.snappy";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("gen") if args.len() == 3 => generate(Path::new(&args[2])),
        Some("measure") if args.len() >= 3 => {
            let repeats = args
                .get(3)
                .map_or(3, |r| r.parse().expect("repeats is a number"));
            measure(Path::new(&args[2]), repeats);
        }
        _ => {
            eprintln!("usage: sluice-bench gen <dir> | sluice-bench measure <dir> [repeats]");
            std::process::exit(2);
        }
    }
}

fn generate(dir: &Path) {
    std::fs::create_dir_all(dir).expect("creates the input dir");
    let text = avro_converter::sample::ndjson(RECORDS, START_MS, STEP_MS);
    std::fs::write(dir.join("player.ndjson"), &text).expect("writes");
    let compressed = sluice_codec::snappy::compress_framed(&text);
    std::fs::write(dir.join("player.ndjson.snappy"), &compressed).expect("writes");
    // The Kinesis batch: the same kind of player events, up to 5 MiB of record data.
    let mut lines = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        if lines.len() + line.len() + 1 > KINESIS_BATCH_BYTES {
            break;
        }
        lines.extend_from_slice(line);
        lines.push(b'\n');
    }
    std::fs::write(dir.join("kinesis-lines.ndjson"), &lines).expect("writes");
    println!(
        "{}",
        serde_json::json!({"generated": dir, "json_bytes": text.len(), "snappy_bytes": compressed.len(), "kinesis_bytes": lines.len()})
    );
}

/// Median wall time of `repeats` runs of `f`, in seconds (one unmeasured warm-up run first).
fn time<T>(repeats: usize, mut f: impl FnMut() -> T) -> f64 {
    black_box(f());
    let mut secs: Vec<f64> = (0..repeats)
        .map(|_| {
            let started = Instant::now();
            black_box(f());
            started.elapsed().as_secs_f64()
        })
        .collect();
    secs.sort_by(f64::total_cmp);
    secs[secs.len() / 2]
}

fn emit(name: &str, secs: f64, bytes: usize, items: usize) {
    println!(
        "{}",
        serde_json::json!({"name": name, "secs": secs, "bytes": bytes, "items": items, "mb_per_s": bytes as f64 / 1e6 / secs})
    );
}

/// [`emit`] for a compressor: also the compressed size.
fn emit_compressed(name: &str, secs: f64, bytes: usize, compressed: usize) {
    println!(
        "{}",
        serde_json::json!({"name": name, "secs": secs, "bytes": bytes, "items": 1, "mb_per_s": bytes as f64 / 1e6 / secs, "compressed": compressed})
    );
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    let path: PathBuf = dir.join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn measure(dir: &Path, repeats: usize) {
    converter(dir, repeats);
    archiver(dir, repeats);
    counters(dir, repeats);
}

fn converter(dir: &Path, repeats: usize) {
    let compressed = read(dir, "player.ndjson.snappy");
    let text = read(dir, "player.ndjson");
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
    let all = sluice_codec::available_threads();
    let one = converter.with_threads(1);
    let check = one.convert(&compressed, KEY).expect("converts");
    assert_eq!(check.converted(), RECORDS as usize);
    let secs = time(repeats, || one.convert(&compressed, KEY).expect("converts"));
    emit("converter", secs, text.len(), RECORDS as usize);
    let many = one.with_threads(all);
    assert_eq!(many.convert(&compressed, KEY).expect("converts"), check);
    let secs = time(repeats, || {
        many.convert(&compressed, KEY).expect("converts")
    });
    emit(
        &format!("converter_{all}cores"),
        secs,
        text.len(),
        RECORDS as usize,
    );
    let converter = many.with_threads(1);

    // Where the converter's time goes: each stage alone.
    let secs = time(repeats, || {
        sluice_codec::snappy::decompress(&compressed).expect("decompresses")
    });
    emit("snappy_decompress_sluice", secs, text.len(), 1);
    let secs = time(repeats, || {
        let mut out = Vec::with_capacity(text.len());
        snap::read::FrameDecoder::new(&compressed[..])
            .read_to_end(&mut out)
            .expect("decompresses");
        out
    });
    emit("snappy_decompress_snap", secs, text.len(), 1);
    let secs = time(repeats, || {
        text.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                serde_json::from_slice::<serde_json::Value>(l)
                    .expect("parses")
                    .as_object()
                    .map_or(0, serde_json::Map::len)
            })
            .sum::<usize>()
    });
    emit("json_parse_serde_value", secs, text.len(), RECORDS as usize);
    let secs = time(repeats, || {
        converter.convert_json(&text, KEY).expect("converts")
    });
    emit(
        "converter_without_decompress",
        secs,
        text.len(),
        RECORDS as usize,
    );
}

fn archiver(dir: &Path, repeats: usize) {
    let event_bytes = read(dir, "kinesis-event.json");
    let lines = read(dir, "kinesis-lines.ndjson");
    let all = sluice_codec::bzip2::available_threads();
    // As the function runs: the runtime reads the event as raw JSON text, the handler reads
    // the records from their spans on `threads` threads.
    let path = |threads: usize| {
        let event: Box<RawValue> = serde_json::from_slice(&event_bytes).expect("parses");
        let records = sluice_events::kinesis_records_from_json_on(event.get(), threads)
            .expect("kinesis event");
        let groups = kinesis_archiver::archive::hour_groups(&records);
        groups
            .iter()
            .map(|g| kinesis_archiver::archive::compress(&g.payload(), 9, threads).len())
            .sum::<usize>()
    };
    let count = lines
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let secs = time(repeats, || path(1));
    emit("archiver_1core", secs, lines.len(), count);
    let secs = time(repeats, || path(all));
    emit(&format!("archiver_{all}cores"), secs, lines.len(), count);

    // The path's stages before the codec: the runtime's read of the event (one thread), then
    // the records on one thread and on all.
    let event: Box<RawValue> = serde_json::from_slice(&event_bytes).expect("parses");
    let secs = time(repeats, || {
        serde_json::from_slice::<Box<RawValue>>(&event_bytes).expect("parses")
    });
    emit("archiver_stage_event_json", secs, event_bytes.len(), count);
    let secs = time(repeats, || {
        sluice_events::kinesis_records_from_json_on(event.get(), 1).expect("kinesis event")
    });
    emit("archiver_stage_records", secs, event_bytes.len(), count);
    let secs = time(repeats, || {
        sluice_events::kinesis_records_from_json_on(event.get(), all).expect("kinesis event")
    });
    emit(
        &format!("archiver_stage_records_{all}cores"),
        secs,
        event_bytes.len(),
        count,
    );
    let records =
        sluice_events::kinesis_records_from_json_on(event.get(), 1).expect("kinesis event");
    let secs = time(repeats, || {
        kinesis_archiver::archive::hour_groups(&records)
            .iter()
            .map(|g| g.payload().len())
            .sum::<usize>()
    });
    emit("archiver_stage_payload", secs, lines.len(), count);

    // bzip2 -9 limits on the same payload.
    let secs = time(repeats, || sluice_codec::bzip2::compress(&lines, 9));
    let size = sluice_codec::bzip2::compress(&lines, 9).len();
    emit_compressed("bzip2_compress_sluice_1core", secs, lines.len(), size);
    let secs = time(repeats, || {
        sluice_codec::bzip2::compress_parallel(&lines, 9, all)
    });
    emit(
        &format!("bzip2_compress_sluice_{all}cores"),
        secs,
        lines.len(),
        1,
    );
    let crate_compress = || {
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(9));
        enc.write_all(&lines).expect("compresses");
        enc.finish().expect("compresses")
    };
    let secs = time(repeats, crate_compress);
    emit_compressed(
        "bzip2_compress_crate",
        secs,
        lines.len(),
        crate_compress().len(),
    );
}

fn counters(dir: &Path, repeats: usize) {
    let files: Vec<Vec<u8>> = (0..100)
        .map(|i| read(&dir.join("counters"), &format!("values_i-{i:08x}")))
        .collect();
    let bytes: usize = files.iter().map(Vec::len).sum();
    let sum = || {
        let mut totals: HashMap<String, i64> = HashMap::new();
        for file in &files {
            for cv in counter_mapper::counter_file::parse_counter_file(file).counters {
                *totals.entry(cv.counter).or_default() += cv.value;
            }
        }
        totals
    };
    let totals = sum();
    let grand: i64 = totals.values().sum();
    println!(
        "{}",
        serde_json::json!({"counter_check": {"counters": totals.len(), "grand_total": grand}})
    );
    let secs = time(repeats * 10, sum);
    emit("counters_100x100", secs, bytes, 10_000);
}
