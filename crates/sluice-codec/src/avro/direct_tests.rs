//! The direct JSON → Avro path against the two-step path it replaces: whenever it encodes a
//! record, the bytes are exactly `coerce` + the container's encoder; it declines the rest.

use apache_avro::schema::ResolvedSchema;
use proptest::prelude::*;

use super::encode::DatumEncoder;
use super::*;

/// Every type the plan coerces, unions that need trying, nested and optional records, maps,
/// arrays, defaults of every shape.
const SCHEMA: &str = r#"{
  "type": "record", "name": "Event", "namespace": "t",
  "fields": [
    {"name": "ts", "type": "long"},
    {"name": "id", "type": "string"},
    {"name": "n", "type": "int", "default": 7},
    {"name": "f", "type": "float", "default": 1.5},
    {"name": "d", "type": ["null", "double"], "default": null},
    {"name": "b", "type": ["null", "boolean"], "default": null},
    {"name": "raw", "type": ["null", "bytes"], "default": null},
    {"name": "h", "type": ["null", {"type": "fixed", "name": "H2", "size": 2}], "default": null},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["a", "b", "c"]}, "default": "b"},
    {"name": "wide", "type": ["int", "long", "string"], "default": 3},
    {"name": "choice", "type": ["null", "Kind", "string"], "default": null},
    {"name": "day", "type": ["null", {"type": "int", "logicalType": "date"}], "default": null},
    {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}], "default": null},
    {"name": "tags", "type": ["null", {"type": "array", "items": "string"}], "default": null},
    {"name": "grid", "type": {"type": "array", "items": {"type": "array", "items": "int"}}, "default": [[1, 2], []]},
    {"name": "attrs", "type": ["null", {"type": "map", "values": ["null", "long"]}], "default": null},
    {"name": "fixed_map", "type": {"type": "map", "values": "string"}, "default": {"z": "1", "a": "2"}},
    {"name": "inner", "type": ["null", {"type": "record", "name": "Inner", "fields": [
        {"name": "x", "type": "int"},
        {"name": "y", "type": ["null", "string"], "default": null},
        {"name": "deep", "type": ["null", "Inner"], "default": null}
    ]}], "default": null},
    {"name": "inner_default", "type": "Inner", "default": {"x": 4}},
    {"name": "either", "type": ["null", "Inner", {"type": "map", "values": "int"}], "default": null},
    {"name": "uid", "type": ["null", {"type": "string", "logicalType": "uuid"}], "default": null}
  ]
}"#;

fn schema() -> Schema {
    parse_schema(SCHEMA).unwrap()
}

/// What the two-step path writes for `text`, or `None` if it rejects it.
fn two_step(schema: &Schema, plan: &CoercionPlan, text: &str) -> Option<Vec<u8>> {
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    let value = plan.coerce(&json).ok()?;
    let resolved = ResolvedSchema::new(schema).unwrap();
    let mut out = Vec::new();
    DatumEncoder::new(resolved.get_names())
        .encode(&value, schema, &mut out)
        .unwrap();
    Some(out)
}

/// Asserts the contract for one text; returns whether the direct path took it.
fn check(schema: &Schema, plan: &CoercionPlan, text: &str) -> bool {
    let mut encoder = JsonEncoder::new(plan, Some("ts"));
    let mut out = b"prefix".to_vec();
    let direct = encoder.encode(text.as_bytes(), &mut out);
    let expected = two_step(schema, plan, text);
    match direct {
        Ok(captured) => {
            let expected = expected
                .unwrap_or_else(|| panic!("direct path accepted what coerce rejects: {text}"));
            assert_eq!(&out[..6], b"prefix");
            assert_eq!(out[6..], expected[..], "different bytes for {text}");
            let json: serde_json::Value = serde_json::from_str(text).unwrap();
            let want = match json.get("ts") {
                None => Captured::Missing,
                Some(serde_json::Value::Number(n)) => Captured::Number(n.clone()),
                Some(_) => Captured::Other,
            };
            assert_eq!(captured, want, "captured field of {text}");
            true
        }
        Err(Declined) => {
            assert_eq!(
                out, b"prefix",
                "a declined record leaves the output as it was"
            );
            false
        }
    }
}

#[test]
fn takes_ordinary_records_and_writes_the_same_bytes() {
    let schema = schema();
    let plan = CoercionPlan::new(&schema);
    let taken = [
        r#"{"ts": 1, "id": "a"}"#,
        r#"{"id": "a", "ts": 1714560000000}"#,
        r#"{"ts": -5, "id": "é\"\\u00e9\n", "n": -2147483648, "f": 3, "d": 2.5e300, "b": true}"#,
        r#"{"ts": 1, "id": "a", "raw": "\u00ff\u0000a", "h": "ab", "kind": "c"}"#,
        r#"{"ts": 1, "id": "a", "wide": 2147483648, "choice": "b"}"#,
        r#"{"ts": 1, "id": "a", "wide": "text", "choice": "not-a-symbol"}"#,
        r#"{"ts": 1, "id": "a", "wide": 3.0, "day": 19000, "at": 1.0e3}"#,
        r#"{"ts": 1, "id": "a", "tags": [], "grid": [[], [1], [2, 3]]}"#,
        r#"{"ts": 1, "id": "a", "tags": ["x", "y"], "attrs": {"b": 1, "a": null, "c": -3}}"#,
        r#"{"ts": 1, "id": "a", "attrs": {"k": 1, "k": 2, "a": 0}, "fixed_map": {}}"#,
        r#"{"ts": 1, "id": "a", "inner": {"y": "why", "x": 1, "deep": {"x": 2}}}"#,
        r#"{"inner_default": {"x": 9, "extra": [1, {"z": null}]}, "ts": 1, "id": "a"}"#,
        r#"{"ts": 1, "id": "a", "unknown": {"a": [1, 2, {"b": "c"}]}, "other": null}"#,
        // A repeated key not yet written (it waits for `n`): the last value is kept.
        r#"{"ts": 1, "id": "a", "f": 2, "f": 3}"#,
        r#"  {"ts": 1, "id": "a"}  "#,
        r#"{"ts": 1, "id": "a", "uid": null, "d": 1, "f": 18446744073709551615}"#,
    ];
    for text in taken {
        assert!(check(&schema, &plan, text), "declined {text}");
    }
}

#[test]
fn declines_what_it_cannot_decide_and_never_disagrees() {
    let schema = schema();
    let plan = CoercionPlan::new(&schema);
    let declined = [
        // Rejected by coerce: wrong types, ranges, missing required fields, bad symbols.
        r#"{"id": "a"}"#,
        r#"{"ts": "1", "id": "a"}"#,
        r#"{"ts": 1.5, "id": "a"}"#,
        r#"{"ts": 9223372036854775808, "id": "a"}"#,
        r#"{"ts": 1, "id": "a", "n": 2147483648}"#,
        r#"{"ts": 1, "id": "a", "f": 1e39}"#,
        r#"{"ts": 1, "id": "a", "kind": "z"}"#,
        r#"{"ts": 1, "id": "a", "h": "abc"}"#,
        r#"{"ts": 1, "id": "a", "raw": "\u0100"}"#,
        r#"{"ts": 1, "id": "a", "inner": {"y": "no x"}}"#,
        r#"{"ts": 1, "id": "a", "tags": [1]}"#,
        r#"{"ts": 1, "id": "a", "attrs": {"a": "b"}}"#,
        r#"[1, 2]"#,
        r#"{"ts": 1, "id": "a"} trailing"#,
        r#"{"ts": 1, "id": "a""#,
        r#""#,
        // Accepted by coerce, but only by trying composite branches or knowing the schema.
        r#"{"ts": 1, "id": "a", "either": {"x": 1}}"#,
        r#"{"ts": 1, "id": "a", "uid": "6f1c9a1e-8b1d-4f5e-9a7c-000000000001"}"#,
        // A repeated key whose first value was already written (coerce keeps the last).
        r#"{"ts": 1, "id": "a", "id": "b"}"#,
        r#"{"ts": 1, "id": "a", "ts": 2}"#,
    ];
    for text in declined {
        assert!(!check(&schema, &plan, text), "took {text}");
    }
}

#[test]
fn the_shipped_player_schema_shape_is_taken_whole() {
    // The converter's own schema shape: required strings, nullable scalars, nested records,
    // an array and a map: nothing in it needs the two-step path.
    let schema = parse_schema(
        r#"{"type":"record","name":"P","fields":[
            {"name":"PTS","type":"long"},{"name":"event_id","type":"string"},
            {"name":"position_ms","type":["null","long"],"default":null},
            {"name":"volume","type":["null","double"],"default":null},
            {"name":"muted","type":["null","boolean"],"default":null},
            {"name":"player","type":["null",{"type":"record","name":"Pl","fields":[
                {"name":"name","type":"string"},{"name":"version","type":["null","string"],"default":null}]}],"default":null},
            {"name":"experiments","type":["null",{"type":"array","items":"string"}],"default":null},
            {"name":"custom","type":["null",{"type":"map","values":"string"}],"default":null}]}"#,
    )
    .unwrap();
    let plan = CoercionPlan::new(&schema);
    let text = r#"{"PTS":1714560000000,"event_id":"e1","position_ms":12,"volume":0.5,"muted":false,
        "player":{"name":"shaka","version":"4.3"},"experiments":["a","b"],"custom":{"k":"v"},"extra":1}"#;
    let mut encoder = JsonEncoder::new(&plan, Some("PTS"));
    let mut out = Vec::new();
    let captured = encoder.encode(text.as_bytes(), &mut out).unwrap();
    assert_eq!(captured, Captured::Number(1_714_560_000_000u64.into()));
    assert_eq!(Some(out), two_step(&schema, &plan, text));
}

#[test]
fn captures_a_field_that_is_not_in_the_schema() {
    let schema = schema();
    let plan = CoercionPlan::new(&schema);
    let mut encoder = JsonEncoder::new(&plan, Some("time"));
    let mut out = Vec::new();
    let got = encoder
        .encode(br#"{"ts": 1, "id": "a", "time": 12.5}"#, &mut out)
        .unwrap();
    assert_eq!(
        got,
        Captured::Number(serde_json::Number::from_f64(12.5).unwrap())
    );
    out.clear();
    let got = encoder
        .encode(br#"{"ts": 1, "id": "a", "time": "noon"}"#, &mut out)
        .unwrap();
    assert_eq!(got, Captured::Other);
    let got = encoder
        .encode(br#"{"ts": 1, "id": "a"}"#, &mut out)
        .unwrap();
    assert_eq!(got, Captured::Missing);
}

/// Arbitrary JSON text shaped roughly like the schema's records, so that both paths are
/// exercised on values that fit, values that almost fit, and junk.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        (-3i32..3).prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        prop_oneof![
            Just("a"),
            Just("b"),
            Just("c"),
            Just("ab"),
            Just("\u{ff}x"),
            Just("€")
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![Just("x"), Just("y"), Just("deep"), Just("k"), Just("a")],
                    inner
                ),
                0..4
            )
            .prop_map(|entries| {
                serde_json::Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                )
            }),
        ]
    })
}

const FIELDS: &[&str] = &[
    "ts",
    "id",
    "n",
    "f",
    "d",
    "b",
    "raw",
    "h",
    "kind",
    "wide",
    "choice",
    "day",
    "at",
    "tags",
    "grid",
    "attrs",
    "fixed_map",
    "inner",
    "inner_default",
    "either",
    "uid",
    "junk",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_disagrees_with_coerce(
        fields in proptest::collection::vec(
            (proptest::sample::select(FIELDS), json_value()), 0..8),
        ts in any::<i64>(),
    ) {
        let schema = schema();
        let plan = CoercionPlan::new(&schema);
        // Keys in any order, some repeated; "ts" and "id" usually present.
        let mut text = format!("{{\"ts\":{ts},\"id\":\"r\"");
        for (k, v) in &fields {
            text.push_str(&format!(",\"{k}\":{v}"));
        }
        text.push('}');
        check(&schema, &plan, &text);
    }
}
