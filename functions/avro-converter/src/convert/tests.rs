//! The conversion's decisions on real bytes: input shapes, partitions, rejects, determinism.

use serde_json::{Value, json};
use sluice_codec::avro::{ContainerCodec, read_container};
use sluice_codec::snappy::{compress_framed, compress_raw};
use sluice_partition::TimeUnit;

use super::*;
use crate::config::TimestampField;
use crate::sample::player_event;
use crate::schema::RecordSchema;

/// 2024-05-14T09:59:58Z: with 1 s steps, events 0–1 fall in hour 09 and 2+ in hour 10.
const NEAR_TEN: i64 = 1_715_680_798_000;
const KEY: &str = "raw/2024/05/14/player-0001.json.snappy";

fn converter_with(codec: ContainerCodec, unit: TimeUnit, limit: usize) -> Converter {
    Converter::new(
        RecordSchema::player_event(),
        codec,
        TimestampField {
            name: "PTS".into(),
            unit,
        },
        limit,
        "avro/",
    )
}

fn converter() -> Converter {
    converter_with(ContainerCodec::Snappy, TimeUnit::Milliseconds, 64 << 20)
}

fn events(n: u64, start: i64) -> Vec<Value> {
    (0..n).map(|i| player_event(i, start, 1_000)).collect()
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn ndjson(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Reads every file back with apache-avro and checks it holds exactly `expected` (coerced).
fn assert_files_hold(converter: &Converter, conversion: &Conversion, expected: &[Value]) {
    let mut read = Vec::new();
    for file in &conversion.files {
        let records = read_container(&file.bytes).unwrap();
        assert_eq!(records.len(), file.records, "{}", file.key);
        read.extend(records);
    }
    let coerced: Vec<_> = expected
        .iter()
        .map(|v| converter.schema().plan.coerce(v).unwrap())
        .collect();
    assert_eq!(read, coerced);
}

#[test]
fn records_spanning_two_hours_go_to_one_file_per_utc_hour() {
    let converter = converter();
    let input = events(5, NEAR_TEN);
    let conversion = converter
        .convert(&compress_raw(&ndjson(&input)), KEY)
        .unwrap();
    let keys: Vec<&str> = conversion.files.iter().map(|f| f.key.as_str()).collect();
    let tag = sluice_partition::source_tag(KEY);
    assert_eq!(
        keys,
        [
            format!("avro/year=2024/month=05/day=14/hour=09/player-0001.{tag}.avro"),
            format!("avro/year=2024/month=05/day=14/hour=10/player-0001.{tag}.avro"),
        ]
    );
    assert_eq!(conversion.files[0].records, 2);
    assert_eq!(conversion.files[1].records, 3);
    assert!(conversion.rejects.is_empty());
    assert_eq!(conversion.converted(), 5);
    assert_files_hold(&converter, &conversion, &input);
}

#[test]
fn raw_and_framed_snappy_give_the_same_files() {
    let converter = converter();
    let text = ndjson(&events(50, NEAR_TEN));
    let raw = converter.convert(&compress_raw(&text), KEY).unwrap();
    let framed = converter.convert(&compress_framed(&text), KEY).unwrap();
    assert_eq!(raw, framed);
    assert_eq!(raw.decompressed_bytes, text.len());
}

#[test]
fn a_single_pretty_printed_object_converts() {
    let converter = converter();
    let event = player_event(7, NEAR_TEN, 1_000);
    let text = serde_json::to_vec_pretty(&event).unwrap();
    let conversion = converter.convert(&compress_raw(&text), KEY).unwrap();
    assert_eq!(conversion.files.len(), 1);
    assert_files_hold(&converter, &conversion, &[event]);
}

#[test]
fn a_json_array_of_objects_converts_in_order() {
    let converter = converter();
    let input = events(30, NEAR_TEN);
    let text = serde_json::to_vec(&input).unwrap();
    let conversion = converter.convert(&compress_framed(&text), KEY).unwrap();
    assert_eq!(conversion.converted(), 30);
    assert_files_hold(&converter, &conversion, &input);
}

#[test]
fn concatenated_pretty_printed_objects_convert() {
    let converter = converter();
    let input = events(3, NEAR_TEN);
    let mut text = Vec::new();
    for v in &input {
        text.extend_from_slice(&serde_json::to_vec_pretty(v).unwrap());
        text.push(b'\n');
    }
    let conversion = converter.convert_json(&text, KEY).unwrap();
    assert_files_hold(&converter, &conversion, &input);
}

#[test]
fn bad_records_are_rejected_with_path_and_expected_type_and_the_rest_convert() {
    let converter = converter();
    let mut input = events(4, NEAR_TEN);
    input[1]["bitrate_kbps"] = json!("high");
    input[2]["device"]["platform"] = json!(12);
    let conversion = converter.convert_json(&ndjson(&input), KEY).unwrap();
    assert_eq!(conversion.converted(), 2);
    assert_files_hold(
        &converter,
        &conversion,
        &[input[0].clone(), input[3].clone()],
    );

    let [first, second] = &conversion.rejects[..] else {
        panic!("{:?}", conversion.rejects);
    };
    assert_eq!((first.index, first.line), (1, Some(2)));
    assert_eq!(first.path.as_deref(), Some("$.bitrate_kbps"));
    assert_eq!(first.expected.as_deref(), Some("int"));
    assert_eq!(
        first.reason,
        "at $.bitrate_kbps: expected int, found string \"high\""
    );
    assert_eq!(parse(&first.record), input[1]);
    assert_eq!(second.path.as_deref(), Some("$.device.platform"));
    assert_eq!(parse(&second.record), input[2]);

    let lines: Vec<Value> = conversion
        .errors_jsonl("s3://raw/x")
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["source"], "s3://raw/x");
    assert_eq!(lines[0]["index"], 1);
    assert_eq!(lines[0]["line"], 2);
    assert_eq!(lines[0]["path"], "$.bitrate_kbps");
    assert_eq!(lines[0]["expected"], "int");
    assert_eq!(lines[0]["record"], input[1]);
}

#[test]
fn missing_or_unusable_timestamps_are_rejected() {
    let converter = converter_with(ContainerCodec::Snappy, TimeUnit::Milliseconds, 1 << 20);
    let schema = r#"{"type":"record","name":"Loose","fields":[
        {"name":"PTS","type":["null","long","double","string"],"default":null}]}"#;
    let loose = Converter::new(
        RecordSchema::from_avsc(schema, &crate::config::SchemaSource::BuiltIn).unwrap(),
        ContainerCodec::Null,
        TimestampField {
            name: "PTS".into(),
            unit: TimeUnit::Milliseconds,
        },
        1 << 20,
        "",
    );
    let cases = [
        (json!({}), "missing field"),
        (json!({"PTS": null}), "null"),
        (json!({"PTS": "1715680798000"}), "string \"1715680798000\""),
        (json!({"PTS": 1.5}), "number 1.5"),
        (
            json!({"PTS": 9_000_000_000_000_000_i64}),
            "outside the supported range",
        ),
    ];
    for (record, found) in cases {
        let conversion = loose
            .convert_json(record.to_string().as_bytes(), KEY)
            .unwrap();
        assert!(conversion.files.is_empty(), "{record}");
        let reject = &conversion.rejects[0];
        assert_eq!(reject.path.as_deref(), Some("$.PTS"), "{record}");
        assert!(
            reject
                .reason
                .starts_with("at $.PTS: expected a whole number of epoch milliseconds"),
            "{}",
            reject.reason
        );
        assert!(reject.reason.contains(found), "{record}: {}", reject.reason);
    }
    // A whole number written as a float is still a usable timestamp.
    let ok = loose
        .convert_json(br#"{"PTS": 1715680798000.0}"#, KEY)
        .unwrap();
    assert_eq!(ok.converted(), 1);
    // With the built-in schema, PTS is a required long: the schema says so first.
    let conversion = converter
        .convert_json(
            br#"{"event_id":"e","event_type":"play","session_id":"s","content_id":"c"}"#,
            KEY,
        )
        .unwrap();
    assert_eq!(conversion.rejects[0].path.as_deref(), Some("$.PTS"));
    assert!(conversion.rejects[0].reason.contains("missing field"));
}

#[test]
fn timestamp_unit_is_configurable() {
    let converter = converter_with(ContainerCodec::Snappy, TimeUnit::Seconds, 1 << 20);
    let mut event = player_event(0, 0, 0);
    event["PTS"] = json!(1_715_680_800); // 2024-05-14T10:00:00Z in seconds
    let conversion = converter
        .convert_json(event.to_string().as_bytes(), KEY)
        .unwrap();
    assert_eq!(
        conversion.files[0].key,
        format!(
            "avro/year=2024/month=05/day=14/hour=10/player-0001.{}.avro",
            sluice_partition::source_tag(KEY)
        )
    );
}

#[test]
fn inputs_with_one_file_name_in_two_directories_write_two_files() {
    let converter = converter();
    let (a, b) = ("incoming/a/p.json.snappy", "incoming/b/p.json.snappy");
    let text = ndjson(&events(10, NEAR_TEN));
    let from_a = converter.convert_json(&text, a).unwrap();
    let from_b = converter.convert_json(&text, b).unwrap();
    let keys_a: Vec<&str> = from_a.files.iter().map(|f| f.key.as_str()).collect();
    let keys_b: Vec<&str> = from_b.files.iter().map(|f| f.key.as_str()).collect();
    assert!(
        keys_a.iter().all(|k| !keys_b.contains(k)),
        "{keys_a:?} {keys_b:?}"
    );
    assert_eq!(from_a.converted() + from_b.converted(), 20);
    // Still deterministic: the same input gives the same keys and bytes.
    let again = converter.convert_json(&text, a).unwrap();
    assert_eq!(
        again
            .files
            .iter()
            .map(|f| (&f.key, &f.bytes))
            .collect::<Vec<_>>(),
        from_a
            .files
            .iter()
            .map(|f| (&f.key, &f.bytes))
            .collect::<Vec<_>>()
    );
}

#[test]
fn non_object_elements_are_rejected_records() {
    let converter = converter();
    let good = player_event(0, NEAR_TEN, 1_000);
    let text = serde_json::to_vec(&json!([good, 42, "x"])).unwrap();
    let conversion = converter.convert_json(&text, KEY).unwrap();
    assert_eq!(conversion.converted(), 1);
    assert_eq!(conversion.rejects.len(), 2);
    assert_eq!(conversion.rejects[0].index, 1);
    assert_eq!(conversion.rejects[0].path.as_deref(), Some("$"));
    assert!(
        conversion.rejects[0]
            .reason
            .contains("expected record sluice.player.PlayerEvent, found number 42"),
        "{}",
        conversion.rejects[0].reason
    );
}

#[test]
fn an_ndjson_line_that_is_not_json_is_a_rejected_record() {
    let converter = converter();
    let input = events(2, NEAR_TEN);
    let mut text = ndjson(&input[..1]);
    text.extend_from_slice(b"{\"PTS\": 17156807\n\n");
    text.extend_from_slice(&ndjson(&input[1..]));
    let conversion = converter.convert_json(&text, KEY).unwrap();
    assert_eq!(conversion.converted(), 2);
    let reject = &conversion.rejects[0];
    assert_eq!((reject.index, reject.line), (1, Some(2)));
    assert!(
        reject.reason.starts_with("line 2: not valid JSON"),
        "{}",
        reject.reason
    );
    assert_eq!(parse(&reject.record), json!("{\"PTS\": 17156807"));
}

#[test]
fn inputs_that_are_not_snappy_or_not_json_are_rejected_whole() {
    let converter = converter();
    let not_snappy = converter.convert(b"\xff\xff\xff\xff\xff\xff\x01\x02", KEY);
    assert!(
        matches!(
            not_snappy,
            Err(ConvertError::Input(InputError::NotSnappy(_)))
        ),
        "{not_snappy:?}"
    );
    let plain_json = converter.convert(br#"{"PTS": 1}"#, KEY);
    assert!(
        matches!(
            plain_json,
            Err(ConvertError::Input(InputError::NotSnappy(_)))
        ),
        "uncompressed JSON is not snappy: {plain_json:?}"
    );
    for text in [
        &b"this is a CSV,not,json\nreally,not,json\n"[..],
        b"\x00\x01\x02\x03binary",
        b"[{\"PTS\": 1}, {\"PTS\": ",
    ] {
        let result = converter.convert(&compress_raw(text), KEY);
        match result {
            Err(ConvertError::Input(InputError::NotJson { reason })) => {
                assert!(!reason.is_empty())
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(text)),
        }
    }
    for text in [&b""[..], b" \n\n ", b"[]"] {
        let result = converter.convert(&compress_framed(text), KEY);
        assert!(
            matches!(result, Err(ConvertError::Input(InputError::Empty))),
            "{:?}: {result:?}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn decompressed_size_is_bounded() {
    let converter = converter_with(ContainerCodec::Snappy, TimeUnit::Milliseconds, 1_000);
    let text = ndjson(&events(10, NEAR_TEN));
    let err = converter.convert(&compress_raw(&text), KEY).unwrap_err();
    assert!(err.to_string().contains("limit of 1000 bytes"), "{err}");
}

#[test]
fn the_same_input_gives_the_same_bytes_and_other_keys_other_sync_markers() {
    let converter = converter();
    let text = compress_raw(&ndjson(&events(200, NEAR_TEN)));
    let first = converter.convert(&text, KEY).unwrap();
    let again = converter.convert(&text, KEY).unwrap();
    assert_eq!(first, again);
    let other = converter
        .convert(&text, "raw/2024/05/14/player-0002.json.snappy")
        .unwrap();
    assert_ne!(first.files[0].bytes, other.files[0].bytes);
    assert_eq!(
        read_container(&first.files[0].bytes).unwrap(),
        read_container(&other.files[0].bytes).unwrap()
    );
}

#[test]
fn codec_is_written_to_the_header() {
    let text = ndjson(&events(20, NEAR_TEN));
    for codec in [
        ContainerCodec::Null,
        ContainerCodec::Deflate,
        ContainerCodec::Snappy,
    ] {
        let converter = converter_with(codec, TimeUnit::Milliseconds, 1 << 20);
        let conversion = converter.convert_json(&text, KEY).unwrap();
        let header = &conversion.files[0].bytes[..64];
        let needle = format!("avro.codec\x0c{}", codec.name());
        let expected = match codec {
            // The header stores the codec name length-prefixed (zig-zag varint).
            ContainerCodec::Null => b"avro.codec\x08null".to_vec(),
            ContainerCodec::Deflate => b"avro.codec\x0edeflate".to_vec(),
            ContainerCodec::Snappy => needle.into_bytes(),
        };
        assert!(
            header.windows(expected.len()).any(|w| w == expected),
            "{codec}: {header:?}"
        );
        assert_files_hold(&converter, &conversion, &events(20, NEAR_TEN));
    }
}

#[test]
fn a_byte_order_mark_is_ignored() {
    let converter = converter();
    let mut text = b"\xef\xbb\xbf".to_vec();
    text.extend_from_slice(&ndjson(&events(2, NEAR_TEN)));
    assert_eq!(converter.convert_json(&text, KEY).unwrap().converted(), 2);
}

/// Today's conversion, written out the long way: every line parsed into a `Value`, coerced,
/// and appended to one writer per hour (with a header), in input order. The golden
/// reference for the direct, segmented path.
/// `(key, records, bytes)` of one output file.
type FileBytes = (String, usize, Vec<u8>);

fn reference(converter: &Converter, text: &[u8]) -> (Vec<FileBytes>, Vec<usize>) {
    let schema = &converter.schema().schema;
    let name = layout::output_name(KEY);
    let mut writers = BTreeMap::new();
    let mut rejected = Vec::new();
    let mut index = 0;
    for line in text.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let parsed = serde_json::from_slice::<Value>(line).ok();
        let coerced = parsed
            .as_ref()
            .and_then(|v| converter.schema().plan.coerce(v).ok());
        let hour = parsed
            .as_ref()
            .and_then(|v| event_hour(v, &converter.timestamp).ok());
        match (coerced, hour) {
            (Some(avro), Some(hour)) => {
                let key = layout::avro_key("avro/", &hour, &name);
                writers
                    .entry(key.clone())
                    .or_insert_with(|| {
                        ContainerWriter::new(
                            schema,
                            ContainerCodec::Snappy,
                            key.as_bytes(),
                            Vec::new(),
                        )
                        .unwrap()
                    })
                    .append(&avro)
                    .unwrap();
            }
            _ => rejected.push(index),
        }
        index += 1;
    }
    let files = writers
        .into_iter()
        .map(|(key, w)| {
            let n = w.records_written();
            (key, n, w.finish().unwrap())
        })
        .collect();
    (files, rejected)
}

/// Events over three hours with bad lines sprinkled in (not JSON, wrong type, no timestamp).
fn mixed_input(n: u64) -> Vec<u8> {
    let mut text = Vec::new();
    for i in 0..n {
        text.extend_from_slice(player_event(i, NEAR_TEN, 997).to_string().as_bytes());
        text.push(b'\n');
        match i % 2_003 {
            5 => text.extend_from_slice(b"{\"PTS\": 17156807\n"),
            700 => text.extend_from_slice(b"{\"PTS\": 1715680798000, \"event_id\": 3}\n"),
            1_400 => text.extend_from_slice(b"{\"event_id\": \"no time\"}\n\n"),
            _ => {}
        }
    }
    text
}

#[test]
fn an_input_within_one_segment_gives_todays_bytes() {
    let converter = converter();
    let text = mixed_input(1_500);
    assert!(text.len() < SEGMENT_BYTES);
    let (files, rejected) = reference(&converter, &text);
    let conversion = converter.convert_json(&text, KEY).unwrap();
    assert!(files.len() >= 2, "spans hours");
    let got: Vec<_> = conversion
        .files
        .iter()
        .map(|f| (f.key.clone(), f.records, f.bytes.clone()))
        .collect();
    assert_eq!(got, files);
    let got_rejected: Vec<_> = conversion.rejects.iter().map(|r| r.index).collect();
    assert_eq!(got_rejected, rejected);
}

#[test]
fn a_large_input_is_the_same_whatever_the_thread_count_and_holds_todays_records() {
    let text = mixed_input(9_000);
    assert!(text.len() > 3 * SEGMENT_BYTES, "{} bytes", text.len());
    let one = converter()
        .with_threads(1)
        .convert_json(&text, KEY)
        .unwrap();
    for threads in [2, 3, 8] {
        let many = converter()
            .with_threads(threads)
            .convert_json(&text, KEY)
            .unwrap();
        assert_eq!(many, one, "{threads} threads");
    }
    // Block boundaries differ from one sequential writer's at segment ends (by design);
    // the files, their schema and their records are today's.
    let (files, rejected) = reference(&converter(), &text);
    assert_eq!(one.files.len(), files.len());
    for (file, (key, records, bytes)) in one.files.iter().zip(&files) {
        assert_eq!((&file.key, file.records), (key, *records));
        assert_eq!(
            read_container(&file.bytes).unwrap(),
            read_container(bytes).unwrap()
        );
        // The same header: magic, codec, schema and sync marker.
        let converter = converter();
        let schema = &converter.schema().schema;
        let marker = avro::sync_marker(schema, key.as_bytes());
        let header = avro::header(schema, ContainerCodec::Snappy, &marker).unwrap();
        assert!(file.bytes.starts_with(&header) && bytes.starts_with(&header));
    }
    assert_eq!(
        one.rejects.iter().map(|r| r.index).collect::<Vec<_>>(),
        rejected
    );
}

#[test]
fn rejects_in_later_segments_name_their_line_in_the_whole_input() {
    let text = mixed_input(9_000);
    let conversion = converter()
        .with_threads(2)
        .convert_json(&text, KEY)
        .unwrap();
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    let not_json: Vec<_> = conversion
        .rejects
        .iter()
        .filter(|r| r.reason.contains("not valid JSON"))
        .collect();
    assert!(not_json.len() >= 4, "{}", not_json.len());
    for reject in not_json {
        let line = reject.line.unwrap();
        assert_eq!(lines[line - 1], b"{\"PTS\": 17156807", "line {line}");
        assert!(
            reject
                .reason
                .starts_with(&format!("line {line}: not valid JSON: ")),
            "{}",
            reject.reason
        );
    }
    let last = conversion.rejects.last().unwrap();
    assert!(
        last.index > 8_000,
        "indices count the whole input: {}",
        last.index
    );
}

#[test]
fn segments_end_at_line_ends() {
    let text = mixed_input(9_000);
    let bounds = segment_bounds(&text);
    assert!(bounds.len() >= 3);
    assert_eq!(bounds[0].0, 0);
    assert_eq!(bounds.last().unwrap().1, text.len());
    for pair in bounds.windows(2) {
        assert_eq!(pair[0].1, pair[1].0);
        assert_eq!(text[pair[0].1 - 1], b'\n');
        assert!(pair[0].1 - pair[0].0 > SEGMENT_BYTES);
    }
    // One line longer than a segment is never cut.
    let long = [vec![b'x'; SEGMENT_BYTES * 2], b"\nab\n".to_vec()].concat();
    assert_eq!(
        segment_bounds(&long),
        vec![
            (0, SEGMENT_BYTES * 2 + 1),
            (SEGMENT_BYTES * 2 + 1, long.len())
        ]
    );
}
