//! JSON → Avro coercion (`sluice_codec::avro::CoercionPlan`), what avro-converter applies
//! to every record, then the container writer it feeds.
//!
//! The first byte picks a schema: avro-converter's built-in player schema, or one that
//! has every type the coercion knows (logical types, fixed, enum, bytes, maps, unions,
//! a recursive record, defaults, an unsupported `decimal`). The rest is JSON.
//!
//! Checks: coercion never panics; an accepted value validates against the schema,
//! encodes and decodes back to itself, and goes through a snappy container file and back;
//! a rejection names a JSON path (`$…`) and what was expected there.
#![no_main]

use std::sync::LazyLock;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use libfuzzer_sys::fuzz_target;
use sluice_codec::avro::{
    CoercionPlan, ContainerCodec, ContainerWriter, Schema, parse_schema, read_container,
};

const PLAYER: &str = include_str!("../../functions/avro-converter/schema/player_event.avsc");

const EVERY_TYPE: &str = r#"{
  "type": "record", "name": "Every", "namespace": "fuzz",
  "fields": [
    {"name": "b", "type": "boolean"},
    {"name": "i", "type": "int"},
    {"name": "l", "type": "long", "default": 7},
    {"name": "f", "type": "float"},
    {"name": "d", "type": "double"},
    {"name": "s", "type": "string", "default": "x"},
    {"name": "n", "type": "null", "default": null},
    {"name": "by", "type": "bytes", "default": "\u00ff"},
    {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
    {"name": "e", "type": {"type": "enum", "name": "Kind", "symbols": ["a", "b", "c"]}},
    {"name": "arr", "type": {"type": "array", "items": "int"}, "default": []},
    {"name": "m", "type": {"type": "map", "values": ["null", "string"]}, "default": {}},
    {"name": "u", "type": ["null", "long", "string", "Four", "Kind", {"type": "array", "items": "double"}], "default": null},
    {"name": "wide", "type": ["int", "long", "float"], "default": 1},
    {"name": "date", "type": {"type": "int", "logicalType": "date"}, "default": 0},
    {"name": "tm", "type": {"type": "int", "logicalType": "time-millis"}, "default": 0},
    {"name": "tu", "type": {"type": "long", "logicalType": "time-micros"}, "default": 0},
    {"name": "tsm", "type": {"type": "long", "logicalType": "timestamp-millis"}, "default": 0},
    {"name": "tsu", "type": {"type": "long", "logicalType": "timestamp-micros"}, "default": 0},
    {"name": "tsn", "type": {"type": "long", "logicalType": "timestamp-nanos"}, "default": 0},
    {"name": "ltm", "type": {"type": "long", "logicalType": "local-timestamp-millis"}, "default": 0},
    {"name": "ltu", "type": {"type": "long", "logicalType": "local-timestamp-micros"}, "default": 0},
    {"name": "ltn", "type": {"type": "long", "logicalType": "local-timestamp-nanos"}, "default": 0},
    {"name": "id", "type": {"type": "string", "logicalType": "uuid"}, "default": "6f1c9a1e-8b1d-4f5e-9a7c-000000000001"},
    {"name": "money", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}], "default": null},
    {"name": "next", "type": ["null", "Every"], "default": null}
  ]
}"#;

struct Compiled {
    schema: &'static Schema,
    plan: CoercionPlan,
    writer: GenericDatumWriter<'static>,
    reader: GenericDatumReader<'static>,
}

static SCHEMAS: LazyLock<[Compiled; 2]> = LazyLock::new(|| {
    [PLAYER, EVERY_TYPE].map(|text| {
        let schema: &'static Schema = Box::leak(Box::new(parse_schema(text).expect("parses")));
        Compiled {
            schema,
            plan: CoercionPlan::new(schema),
            writer: GenericDatumWriter::builder(schema).build().expect("writer"),
            reader: GenericDatumReader::builder(schema).build().expect("reader"),
        }
    })
});

/// Any single allocation over 64 MiB is a crash (hostile length headers).
#[global_allocator]
static ALLOC: sluice_fuzz::LimitedAlloc = sluice_fuzz::LimitedAlloc;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, json)) = data.split_first() else {
        return;
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(json) else {
        return;
    };
    let Compiled {
        schema,
        plan,
        writer,
        reader,
    } = &SCHEMAS[usize::from(selector & 1)];
    match plan.coerce(&json) {
        Ok(value) => {
            assert!(
                value.validate(schema),
                "coerced value does not fit: {value:?}"
            );
            let datum = writer.write_value_to_vec(value.clone()).expect("encodes");
            let back = reader.read_value(&mut datum.as_slice()).expect("decodes");
            assert_eq!(back, value);
            let mut writer =
                ContainerWriter::new(schema, ContainerCodec::Snappy, b"fuzz.avro", Vec::new())
                    .expect("writer");
            writer.append(&value).expect("append");
            let file = writer.finish().expect("finish");
            assert_eq!(read_container(&file).expect("reads back"), vec![value]);
        }
        Err(err) => {
            assert!(err.path.starts_with('$'), "{err:?}");
            assert!(!err.expected.is_empty() && !err.found.is_empty(), "{err:?}");
            assert!(err.to_string().contains(&err.path));
        }
    }
});
