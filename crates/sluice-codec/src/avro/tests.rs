use std::collections::HashMap;

use apache_avro::types::Value;
use proptest::prelude::*;
use serde_json::json;

use super::*;

const PLAYER_EVENT: &str = r#"{
  "type": "record", "name": "PlayerEvent", "namespace": "sluice.games",
  "fields": [
    {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "player_id", "type": "string"},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["login", "match_end", "purchase"]}},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "level", "type": "int"},
    {"name": "xp", "type": "long"},
    {"name": "ratio", "type": "float"},
    {"name": "score", "type": "double"},
    {"name": "premium", "type": "boolean"},
    {"name": "nothing", "type": "null"},
    {"name": "token", "type": "bytes"},
    {"name": "hash", "type": {"type": "fixed", "name": "Hash4", "size": 4}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attrs", "type": {"type": "map", "values": "long"}},
    {"name": "device", "type": {"type": "record", "name": "Device", "fields": [
        {"name": "os", "type": "Kind2"},
        {"name": "os_version", "type": ["null", "string"], "default": null}
    ]}},
    {"name": "previous_device", "type": ["null", "Device"], "default": null},
    {"name": "region", "type": "string", "default": "eu-west-1"},
    {"name": "wide", "type": ["int", "long"]}
  ]
}"#;

fn player_event_schema() -> Schema {
    // `Kind2` is referenced by name inside Device, defined here first.
    let text = PLAYER_EVENT.replace(
        r#"{"name": "os", "type": "Kind2"}"#,
        r#"{"name": "os", "type": {"type": "enum", "name": "Os", "symbols": ["ios", "android", "web"]}}"#,
    );
    parse_schema(&text).unwrap()
}

fn player_event_json(i: u64) -> serde_json::Value {
    let mut attrs = serde_json::Map::new();
    for k in 0..(i % 5) {
        attrs.insert(format!("attr_{k}"), json!(k * i));
    }
    let kind = ["login", "match_end", "purchase"][(i % 3) as usize];
    let os = ["ios", "android", "web"][(i % 3) as usize];
    json!({
        "event_id": format!("6f1c9a1e-8b1d-4f5e-9a7c-{:012x}", i),
        "player_id": format!("player-{}", i % 977),
        "kind": kind,
        "ts": 1_714_560_000_000u64 + i * 1_000,
        "day": 19_844 + (i % 30),
        "level": i % 80,
        "xp": i * 1_000_003,
        "ratio": 0.5,
        "score": (i as f64) * 1.25,
        "premium": i.is_multiple_of(7),
        "nothing": null,
        "token": "t\u{00ff}k",
        "hash": "ab\u{0001}d",
        "tags": ["ranked", format!("season-{}", i % 4)],
        "attrs": attrs,
        "device": {"os": os, "os_version": if i.is_multiple_of(2) { json!("17.4") } else { json!(null) }},
        "previous_device": if i.is_multiple_of(4) { json!({"os": "web"}) } else { json!(null) },
        "wide": if i.is_multiple_of(2) { json!(5) } else { json!(1u64 << 40) },
        "ignored_extra_field": {"anything": [1, 2, 3]}
    })
}

fn field<'v>(record: &'v Value, name: &str) -> &'v Value {
    match record {
        Value::Record(fields) => &fields.iter().find(|(n, _)| n == name).unwrap().1,
        other => panic!("not a record: {other:?}"),
    }
}

// ---------------------------------------------------------------- parse_schema

#[test]
fn parse_schema_rejects_invalid_json_schema() {
    let err = parse_schema(r#"{"type": "record", "name": "X"}"#).unwrap_err();
    assert!(matches!(err, AvroError::Schema { .. }), "{err:?}");
    assert!(err.to_string().starts_with("invalid Avro schema"), "{err}");
}

// ---------------------------------------------------------------- coercion

#[test]
fn coerces_every_supported_type() {
    let schema = player_event_schema();
    let plan = CoercionPlan::new(&schema);
    let v = plan.coerce(&player_event_json(4)).unwrap();
    assert_eq!(
        field(&v, "event_id"),
        &Value::Uuid("6f1c9a1e-8b1d-4f5e-9a7c-000000000004".parse().unwrap())
    );
    assert_eq!(field(&v, "player_id"), &Value::String("player-4".into()));
    assert_eq!(field(&v, "kind"), &Value::Enum(1, "match_end".into()));
    assert_eq!(field(&v, "ts"), &Value::TimestampMillis(1_714_560_004_000));
    assert_eq!(field(&v, "day"), &Value::Date(19_848));
    assert_eq!(field(&v, "level"), &Value::Int(4));
    assert_eq!(field(&v, "xp"), &Value::Long(4_000_012));
    assert_eq!(field(&v, "ratio"), &Value::Float(0.5));
    assert_eq!(field(&v, "score"), &Value::Double(5.0));
    assert_eq!(field(&v, "premium"), &Value::Boolean(false));
    assert_eq!(field(&v, "nothing"), &Value::Null);
    assert_eq!(field(&v, "token"), &Value::Bytes(vec![b't', 0xff, b'k']));
    assert_eq!(
        field(&v, "hash"),
        &Value::Fixed(4, vec![b'a', b'b', 1, b'd'])
    );
    assert_eq!(
        field(&v, "tags"),
        &Value::Array(vec![
            Value::String("ranked".into()),
            Value::String("season-0".into())
        ])
    );
    let attrs: HashMap<String, Value> = (0..4)
        .map(|k| (format!("attr_{k}"), Value::Long(k * 4)))
        .collect();
    assert_eq!(field(&v, "attrs"), &Value::Map(attrs));
    let device = field(&v, "device");
    assert_eq!(field(device, "os"), &Value::Enum(1, "android".into()));
    assert_eq!(
        field(device, "os_version"),
        &Value::Union(1, Box::new(Value::String("17.4".into())))
    );
    assert!(
        matches!(field(&v, "previous_device"), Value::Union(1, inner) if matches!(**inner, Value::Record(_)))
    );
    assert_eq!(field(&v, "region"), &Value::String("eu-west-1".into()));
    assert_eq!(field(&v, "wide"), &Value::Union(0, Box::new(Value::Int(5))));
    // Extra JSON fields are ignored.
    let Value::Record(fields) = &v else {
        unreachable!()
    };
    assert!(fields.iter().all(|(n, _)| n != "ignored_extra_field"));
    assert_eq!(fields.len(), 19);
}

#[test]
fn json_null_picks_the_null_branch_of_a_union() {
    let schema = parse_schema(r#"["string", "null"]"#).unwrap();
    assert_eq!(
        coerce(&json!(null), &schema).unwrap(),
        Value::Union(1, Box::new(Value::Null))
    );
}

#[test]
fn union_picks_the_first_branch_the_value_fits() {
    let schema = parse_schema(r#"["null", "int", "long", "double"]"#).unwrap();
    let plan = CoercionPlan::new(&schema);
    assert_eq!(
        plan.coerce(&json!(7)).unwrap(),
        Value::Union(1, Box::new(Value::Int(7)))
    );
    assert_eq!(
        plan.coerce(&json!(1u64 << 40)).unwrap(),
        Value::Union(2, Box::new(Value::Long(1 << 40)))
    );
    assert_eq!(
        plan.coerce(&json!(2.5)).unwrap(),
        Value::Union(3, Box::new(Value::Double(2.5)))
    );
}

#[test]
fn missing_field_takes_the_schema_default() {
    let schema = parse_schema(
        r#"{"type":"record","name":"R","fields":[
            {"name":"a","type":"int","default":3},
            {"name":"b","type":["null","string"],"default":null},
            {"name":"c","type":{"type":"array","items":"int"},"default":[1,2]}]}"#,
    )
    .unwrap();
    let v = coerce(&json!({}), &schema).unwrap();
    assert_eq!(
        v,
        Value::Record(vec![
            ("a".into(), Value::Int(3)),
            ("b".into(), Value::Union(0, Box::new(Value::Null))),
            ("c".into(), Value::Array(vec![Value::Int(1), Value::Int(2)])),
        ])
    );
}

#[test]
fn missing_field_without_default_names_the_field_path() {
    let schema = player_event_schema();
    let mut j = player_event_json(1);
    j["device"].as_object_mut().unwrap().remove("os");
    let err = CoercionPlan::new(&schema).coerce(&j).unwrap_err();
    assert_eq!(err.path, "$.device.os");
    assert_eq!(
        err.expected,
        "enum sluice.games.Os (one of ios, android, web)"
    );
    assert_eq!(err.found, "missing field (no default in schema)");
}

#[test]
fn rejected_record_names_path_expected_type_and_found_value() {
    let schema = player_event_schema();
    let mut j = player_event_json(2);
    j["device"]["os_version"] = json!(12);
    let err = CoercionPlan::new(&schema).coerce(&j).unwrap_err();
    assert_eq!(err.path, "$.device.os_version");
    assert_eq!(err.expected, "string");
    assert_eq!(err.found, "number 12");
    assert_eq!(
        err.to_string(),
        "at $.device.os_version: expected string, found number 12"
    );
}

#[test]
fn rejected_array_item_names_its_index() {
    let schema = player_event_schema();
    let mut j = player_event_json(2);
    j["tags"] = json!(["a", "b", "c", false]);
    let err = CoercionPlan::new(&schema).coerce(&j).unwrap_err();
    assert_eq!(
        err.to_string(),
        "at $.tags[3]: expected string, found boolean false"
    );
}

#[test]
fn rejected_map_value_names_its_key() {
    let schema = player_event_schema();
    let mut j = player_event_json(2);
    j["attrs"] = json!({"ok": 1, "not ok": "x"});
    let err = CoercionPlan::new(&schema).coerce(&j).unwrap_err();
    assert_eq!(err.path, r#"$.attrs["not ok"]"#);
    assert_eq!(err.expected, "long");
    assert_eq!(err.found, r#"string "x""#);
}

#[test]
fn error_inside_nullable_record_points_into_the_record() {
    let schema = player_event_schema();
    let mut j = player_event_json(2);
    j["previous_device"] = json!({"os": "windows"});
    let err = CoercionPlan::new(&schema).coerce(&j).unwrap_err();
    assert_eq!(err.path, "$.previous_device.os");
    assert_eq!(err.found, r#"string "windows""#);
}

#[test]
fn union_without_a_fitting_branch_lists_the_branches() {
    let schema = parse_schema(r#"["null", "int", "boolean"]"#).unwrap();
    let err = coerce(&json!("seven"), &schema).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"at $: expected one of null, int, boolean, found string "seven""#
    );
}

#[test]
fn int_out_of_range_is_rejected() {
    let schema =
        parse_schema(r#"{"type":"record","name":"R","fields":[{"name":"n","type":"int"}]}"#)
            .unwrap();
    let err = coerce(&json!({"n": 1u64 << 40}), &schema).unwrap_err();
    assert_eq!(err.path, "$.n");
    assert_eq!(err.expected, "int");
    assert_eq!(err.found, "number 1099511627776 (out of range for int)");
    assert!(coerce(&json!({"n": i32::MIN}), &schema).is_ok());
    assert!(coerce(&json!({"n": i64::from(i32::MAX) + 1}), &schema).is_err());
}

#[test]
fn long_out_of_range_is_rejected() {
    let schema = parse_schema(r#""long""#).unwrap();
    let err = coerce(&json!(u64::MAX), &schema).unwrap_err();
    assert_eq!(
        err.found,
        "number 18446744073709551615 (out of range for long)"
    );
    let err = coerce(&json!(1e19), &schema).unwrap_err();
    assert!(err.found.contains("out of range"), "{err}");
}

#[test]
fn fractional_number_for_int_is_rejected_but_whole_float_is_accepted() {
    let schema = parse_schema(r#""int""#).unwrap();
    let err = coerce(&json!(1.5), &schema).unwrap_err();
    assert_eq!(
        err.to_string(),
        "at $: expected int, found number 1.5 (not a whole number)"
    );
    assert_eq!(coerce(&json!(3.0), &schema).unwrap(), Value::Int(3));
    let long = parse_schema(r#""long""#).unwrap();
    assert!(coerce(&json!(-0.25), &long).is_err());
}

#[test]
fn integers_are_accepted_for_float_and_double() {
    assert_eq!(
        coerce(&json!(3), &parse_schema(r#""float""#).unwrap()).unwrap(),
        Value::Float(3.0)
    );
    assert_eq!(
        coerce(&json!(-9), &parse_schema(r#""double""#).unwrap()).unwrap(),
        Value::Double(-9.0)
    );
}

#[test]
fn float_out_of_f32_range_is_rejected() {
    let err = coerce(&json!(1e300), &parse_schema(r#""float""#).unwrap()).unwrap_err();
    assert!(err.found.contains("out of range for float"), "{err}");
}

#[test]
fn unknown_enum_symbol_is_rejected() {
    let schema = player_event_schema();
    let mut j = player_event_json(2);
    j["kind"] = json!("logout");
    let err = CoercionPlan::new(&schema).coerce(&j).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"at $.kind: expected enum sluice.games.Kind (one of login, match_end, purchase), found string "logout""#
    );
}

#[test]
fn fixed_of_wrong_length_is_rejected() {
    let schema = player_event_schema();
    let mut j = player_event_json(2);
    j["hash"] = json!("abc");
    let err = CoercionPlan::new(&schema).coerce(&j).unwrap_err();
    assert_eq!(err.path, "$.hash");
    assert_eq!(err.expected, "fixed sluice.games.Hash4 (4 bytes)");
    assert_eq!(err.found, "string of 3 bytes");
}

#[test]
fn bytes_outside_latin1_are_rejected() {
    let err = coerce(&json!("€"), &parse_schema(r#""bytes""#).unwrap()).unwrap_err();
    assert!(err.found.contains("ISO-8859-1"), "{err}");
}

#[test]
fn malformed_uuid_is_rejected() {
    let schema = parse_schema(r#"{"type":"string","logicalType":"uuid"}"#).unwrap();
    let err = coerce(&json!("not-a-uuid"), &schema).unwrap_err();
    assert_eq!(err.expected, "uuid string");
}

#[test]
fn decimal_values_are_reported_as_unsupported_but_null_still_fits() {
    let schema = parse_schema(
        r#"["null", {"type":"bytes","logicalType":"decimal","precision":9,"scale":2}]"#,
    )
    .unwrap();
    assert_eq!(
        coerce(&json!(null), &schema).unwrap(),
        Value::Union(0, Box::new(Value::Null))
    );
    let err = coerce(&json!(1.25), &schema).unwrap_err();
    assert_eq!(err.expected, "decimal (not supported by JSON coercion)");
}

#[test]
fn long_strings_are_shortened_in_errors() {
    let long = "x".repeat(500);
    let err = coerce(&json!(long), &parse_schema(r#""int""#).unwrap()).unwrap_err();
    assert!(err.found.len() < 60, "{}", err.found);
    assert!(err.found.ends_with('…'));
}

#[test]
fn named_references_resolve_to_their_definition() {
    let schema = parse_schema(
        r#"{"type":"record","name":"Person","namespace":"n","fields":[
            {"name":"home","type":{"type":"record","name":"Address","fields":[{"name":"city","type":"string"}]}},
            {"name":"work","type":["null","Address"]},
            {"name":"other","type":"n.Address"}]}"#,
    )
    .unwrap();
    let plan = CoercionPlan::new(&schema);
    let v = plan
        .coerce(&json!({"home":{"city":"Oslo"},"work":{"city":"Bergen"},"other":{"city":"Tromsø"}}))
        .unwrap();
    let city = |c: &str| Value::Record(vec![("city".into(), Value::String(c.into()))]);
    assert_eq!(
        field(&v, "work"),
        &Value::Union(1, Box::new(city("Bergen")))
    );
    assert_eq!(field(&v, "other"), &city("Tromsø"));
    let err = plan
        .coerce(&json!({"home":{"city":"Oslo"},"work":{"city":1},"other":{"city":"x"}}))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "at $.work.city: expected string, found number 1"
    );
}

#[test]
fn recursive_records_coerce_and_roundtrip() {
    let schema = parse_schema(
        r#"{"type":"record","name":"Node","fields":[
            {"name":"value","type":"int"},
            {"name":"next","type":["null","Node"],"default":null}]}"#,
    )
    .unwrap();
    let plan = CoercionPlan::new(&schema);
    let v = plan
        .coerce(&json!({"value":1,"next":{"value":2,"next":{"value":3}}}))
        .unwrap();
    let err = plan
        .coerce(&json!({"value":1,"next":{"value":2,"next":{"value":"three"}}}))
        .unwrap_err();
    assert_eq!(err.path, "$.next.next.value");
    let bytes = write_container(&schema, [&v], ContainerCodec::Null).unwrap();
    assert_eq!(read_container(&bytes).unwrap(), vec![v]);
}

// ---------------------------------------------------------------- container files

#[test]
fn container_of_every_type_reads_back_with_apache_avro_reader_for_every_codec() {
    let schema = player_event_schema();
    let plan = CoercionPlan::new(&schema);
    let records: Vec<Value> = (0..500)
        .map(|i| plan.coerce(&player_event_json(i)).unwrap())
        .collect();
    for codec in [
        ContainerCodec::Null,
        ContainerCodec::Snappy,
        ContainerCodec::Deflate,
    ] {
        let bytes = write_container(&schema, &records, codec).unwrap();
        let reader = apache_avro::Reader::new(&bytes[..]).unwrap();
        assert_eq!(reader.writer_schema(), &schema, "{codec}");
        let back: Vec<Value> = reader.map(Result::unwrap).collect();
        assert_eq!(back, records, "{codec}");
    }
}

#[test]
fn container_header_names_the_codec() {
    let schema = parse_schema(r#""string""#).unwrap();
    for codec in [
        ContainerCodec::Null,
        ContainerCodec::Snappy,
        ContainerCodec::Deflate,
    ] {
        let bytes = write_container(&schema, [Value::String("x".into())], codec).unwrap();
        let needle = [
            b"avro.codec".as_slice(),
            &[codec.name().len() as u8 * 2],
            codec.name().as_bytes(),
        ]
        .concat();
        assert!(bytes.windows(needle.len()).any(|w| w == needle), "{codec}");
    }
}

#[test]
fn datum_encoding_matches_apache_avro() {
    // Records with at most one map entry (i % 5 <= 1), so apache-avro's HashMap order
    // cannot differ from our sorted order.
    let schema = player_event_schema();
    let plan = CoercionPlan::new(&schema);
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap();
    for i in [0u64, 1, 5, 6, 10, 11, 15, 16] {
        let record = plan.coerce(&player_event_json(i)).unwrap();
        let theirs = writer.write_value_to_vec(record.clone()).unwrap();
        let resolved = apache_avro::schema::ResolvedSchema::new(&schema).unwrap();
        let mut ours = Vec::new();
        encode::DatumEncoder::new(resolved.get_names())
            .encode(&record, &schema, &mut ours)
            .unwrap();
        assert_eq!(ours, theirs, "record {i}");
    }
}

#[test]
fn writing_the_same_records_twice_gives_identical_bytes() {
    let schema = player_event_schema();
    let plan = CoercionPlan::new(&schema);
    for codec in [
        ContainerCodec::Null,
        ContainerCodec::Snappy,
        ContainerCodec::Deflate,
    ] {
        // Coerce separately each time: fresh HashMaps for the map field.
        let write = || {
            let records = (0..300).map(|i| plan.coerce(&player_event_json(i)).unwrap());
            write_container_seeded(&schema, records, codec, b"out/2024/05/01/part-0.avro").unwrap()
        };
        assert_eq!(write(), write(), "{codec}");
    }
}

#[test]
fn sync_marker_depends_on_schema_and_seed_only() {
    let a = parse_schema(r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}"#)
        .unwrap();
    let b = parse_schema(r#"{"type":"record","name":"B","fields":[{"name":"x","type":"int"}]}"#)
        .unwrap();
    assert_eq!(sync_marker(&a, b"k1"), sync_marker(&a, b"k1"));
    assert_ne!(sync_marker(&a, b"k1"), sync_marker(&a, b"k2"));
    assert_ne!(sync_marker(&a, b"k1"), sync_marker(&b, b"k1"));
    // Pinned (computed independently with Python's FNV-1a 128 over the canonical form):
    // a change here changes every file we write.
    assert_eq!(
        a.canonical_form(),
        r#"{"name":"A","type":"record","fields":[{"name":"x","type":"int"}]}"#
    );
    assert_eq!(
        sync_marker(&a, b""),
        [
            199, 152, 99, 38, 108, 199, 172, 238, 113, 5, 211, 155, 87, 131, 39, 165
        ]
    );
    let bytes = write_container_seeded(
        &a,
        [Value::Record(vec![("x".into(), Value::Int(1))])],
        ContainerCodec::Null,
        b"k1",
    )
    .unwrap();
    assert_eq!(apache_avro::read_marker(&bytes), sync_marker(&a, b"k1"));
    assert!(bytes.ends_with(&sync_marker(&a, b"k1")));
}

#[test]
fn small_blocks_split_the_file_and_still_read_back() {
    let schema = player_event_schema();
    let plan = CoercionPlan::new(&schema);
    let records: Vec<Value> = (0..200)
        .map(|i| plan.coerce(&player_event_json(i)).unwrap())
        .collect();
    let mut writer = ContainerWriter::new(&schema, ContainerCodec::Snappy, b"", Vec::new())
        .unwrap()
        .with_block_size(1024);
    for r in &records {
        writer.append(r).unwrap();
    }
    assert_eq!(writer.records_written(), 200);
    let marker = writer.marker();
    let bytes = writer.finish().unwrap();
    let markers = bytes.windows(16).filter(|w| *w == marker).count();
    assert!(markers > 10, "only {markers} markers");
    assert_eq!(read_container(&bytes).unwrap(), records);
}

#[test]
fn empty_container_has_a_header_and_no_records() {
    let schema = player_event_schema();
    let bytes = write_container(&schema, Vec::<Value>::new(), ContainerCodec::Snappy).unwrap();
    assert!(bytes.starts_with(b"Obj\x01"));
    assert!(read_container(&bytes).unwrap().is_empty());
}

#[test]
fn mismatching_record_is_refused_with_its_index_and_path_and_leaves_the_file_intact() {
    let schema = player_event_schema();
    let plan = CoercionPlan::new(&schema);
    let good = plan.coerce(&player_event_json(1)).unwrap();
    let mut bad = good.clone();
    if let Value::Record(fields) = &mut bad {
        fields[5].1 = Value::String("five".into()); // level: int
    }
    let mut writer =
        ContainerWriter::new(&schema, ContainerCodec::Deflate, b"", Vec::new()).unwrap();
    writer.append(&good).unwrap();
    let err = writer.append(&bad).unwrap_err();
    match &err {
        AvroError::RecordMismatch {
            index,
            path,
            reason,
        } => {
            assert_eq!(*index, 1);
            assert_eq!(path, "$.level");
            assert!(
                reason.contains("String") && reason.contains("Int"),
                "{reason}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    writer.append(&good).unwrap();
    let bytes = writer.finish().unwrap();
    assert_eq!(read_container(&bytes).unwrap(), vec![good.clone(), good]);
}

#[test]
fn record_missing_a_field_is_refused_naming_the_field() {
    let schema = parse_schema(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"int"}]}"#).unwrap();
    let err = write_container(
        &schema,
        [Value::Record(vec![("a".into(), Value::Int(1))])],
        ContainerCodec::Null,
    )
    .unwrap_err();
    assert!(
        matches!(&err, AvroError::RecordMismatch { path, .. } if path == "$.b"),
        "{err:?}"
    );
}

#[test]
fn read_container_rejects_garbage() {
    let err = read_container(b"not an avro file").unwrap_err();
    assert!(matches!(err, AvroError::Read { len: 16, .. }), "{err:?}");
}

#[test]
fn codec_names_parse_and_unknown_names_are_rejected() {
    assert_eq!(
        "null".parse::<ContainerCodec>().unwrap(),
        ContainerCodec::Null
    );
    assert_eq!(
        "snappy".parse::<ContainerCodec>().unwrap(),
        ContainerCodec::Snappy
    );
    assert_eq!(
        "deflate".parse::<ContainerCodec>().unwrap(),
        ContainerCodec::Deflate
    );
    let err = "zstd".parse::<ContainerCodec>().unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"unknown Avro container codec "zstd" (expected null, snappy or deflate)"#
    );
    assert!("Snappy".parse::<ContainerCodec>().is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn coerced_records_roundtrip_through_a_container(
        rows in proptest::collection::vec(
            (any::<i32>(), any::<i64>(), "[a-z]{0,8}", proptest::option::of(any::<bool>()),
             proptest::collection::hash_map("[a-z]{1,4}", any::<i32>(), 0..6)),
            0..20),
        codec in prop_oneof![Just(ContainerCodec::Null), Just(ContainerCodec::Snappy), Just(ContainerCodec::Deflate)],
    ) {
        let schema = parse_schema(r#"{"type":"record","name":"Row","fields":[
            {"name":"i","type":"int"},{"name":"l","type":"long"},{"name":"s","type":"string"},
            {"name":"b","type":["null","boolean"]},{"name":"m","type":{"type":"map","values":"int"}}]}"#).unwrap();
        let plan = CoercionPlan::new(&schema);
        let records: Vec<Value> = rows
            .iter()
            .map(|(i, l, s, b, m)| plan.coerce(&json!({"i": i, "l": l, "s": s, "b": b, "m": m})).unwrap())
            .collect();
        let bytes = write_container(&schema, &records, codec).unwrap();
        prop_assert_eq!(read_container(&bytes).unwrap(), records);
    }
}
