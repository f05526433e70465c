//! JSON text → Avro binary in one pass, driven by a [`CoercionPlan`]: no `serde_json::Value`
//! tree and no `apache_avro` value tree are built. Each JSON token is checked against the
//! plan node it meets and its Avro encoding written as it is read.
//!
//! The contract is exact: when [`JsonEncoder::encode`] succeeds, its bytes are the bytes
//! [`CoercionPlan::coerce`] followed by the container writer's encoder would produce for the
//! same text (same union branches, range checks, defaults, map-key order). When the text needs
//! anything this path does not decide on its own — a value that does not fit, invalid JSON, a
//! union whose branch can only be found by trying composite values, a duplicate key of a
//! field already written, a UUID — it *declines*, writes nothing, and the caller coerces the
//! parsed value as before, which accepts or rejects it with the usual error. So the two
//! paths never disagree: this one is only faster on the records it takes.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::Value;
use super::coerce::{CoercionPlan, JsonKind, Node, Numeric, RecordNode, kind_fits, latin1_bytes};
use super::encode::{write_bytes, write_long};

/// [`JsonEncoder::encode`] could not decide this record on its own: coerce the parsed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declined;

/// What a record held in the top-level field named by [`JsonEncoder::capture`].
#[derive(Debug, Clone, PartialEq)]
pub enum Captured {
    /// No such field.
    Missing,
    /// A JSON number (the last one, if the key repeats).
    Number(serde_json::Number),
    /// Something other than a number.
    Other,
}

/// Encodes JSON records straight to Avro binary for one plan. Keeps its scratch buffers
/// between records: make one per thread and reuse it.
#[derive(Debug)]
pub struct JsonEncoder<'p> {
    ctx: Ctx<'p>,
}

#[derive(Debug)]
struct Ctx<'p> {
    plan: &'p CoercionPlan,
    capture: Option<String>,
    captured: Captured,
    buffers: Vec<Vec<u8>>,
    slots: Vec<Vec<Option<(usize, usize)>>>,
    entries: Vec<Vec<Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: (usize, usize),
    value: (usize, usize),
}

impl<'p> JsonEncoder<'p> {
    /// An encoder for `plan`'s schema; `capture` names a top-level field whose JSON number
    /// [`encode`](Self::encode) returns (e.g. the event-time field that partitions output),
    /// whether or not the schema has that field.
    pub fn new(plan: &'p CoercionPlan, capture: Option<&str>) -> Self {
        Self {
            ctx: Ctx {
                plan,
                capture: capture.map(str::to_owned),
                captured: Captured::Missing,
                buffers: Vec::new(),
                slots: Vec::new(),
                entries: Vec::new(),
            },
        }
    }

    /// Appends the Avro encoding of the JSON value in `text` (whitespace around it allowed)
    /// to `out` and returns the captured field. On [`Declined`] `out` is unchanged.
    pub fn encode(&mut self, text: &[u8], out: &mut Vec<u8>) -> Result<Captured, Declined> {
        let mark = out.len();
        self.ctx.captured = Captured::Missing;
        let mut de = serde_json::Deserializer::from_slice(text);
        let root = &self.ctx.plan.root;
        let result = NodeSeed {
            ctx: &mut self.ctx,
            node: root,
            out: &mut *out,
            root: true,
            capture: false,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end());
        match result {
            Ok(()) => Ok(std::mem::replace(&mut self.ctx.captured, Captured::Missing)),
            Err(_) => {
                out.truncate(mark);
                Err(Declined)
            }
        }
    }
}

impl Ctx<'_> {
    fn buffer(&mut self) -> Vec<u8> {
        self.buffers.pop().unwrap_or_default()
    }

    fn give_buffer(&mut self, mut buffer: Vec<u8>) {
        buffer.clear();
        self.buffers.push(buffer);
    }

    fn slots(&mut self, n: usize) -> Vec<Option<(usize, usize)>> {
        let mut slots = self.slots.pop().unwrap_or_default();
        slots.clear();
        slots.resize(n, None);
        slots
    }

    fn capture_scalar(&mut self, scalar: &Scalar<'_>) {
        self.captured = match *scalar {
            Scalar::I64(i) => Captured::Number(i.into()),
            Scalar::U64(u) => Captured::Number(u.into()),
            Scalar::F64(x) => {
                serde_json::Number::from_f64(x).map_or(Captured::Other, Captured::Number)
            }
            _ => Captured::Other,
        };
    }
}

/// A JSON scalar token.
enum Scalar<'a> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(&'a str),
}

impl Scalar<'_> {
    /// `serde_json::Number::as_i64`, then the whole-number rule of [`CoercionPlan`]'s longs.
    fn long(&self) -> Option<i64> {
        match *self {
            Scalar::I64(i) => Some(i),
            Scalar::U64(u) => i64::try_from(u).ok(),
            Scalar::F64(x) => (x.fract() == 0.0
                && x.is_finite()
                && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&x))
            .then_some(x as i64),
            _ => None,
        }
    }

    fn int(&self) -> Option<i32> {
        self.long().and_then(|l| i32::try_from(l).ok())
    }

    /// `serde_json::Number::as_f64`.
    fn double(&self) -> Option<f64> {
        match *self {
            Scalar::I64(i) => Some(i as f64),
            Scalar::U64(u) => Some(u as f64),
            Scalar::F64(x) => Some(x),
            _ => None,
        }
    }

    fn is_number(&self) -> bool {
        matches!(self, Scalar::I64(_) | Scalar::U64(_) | Scalar::F64(_))
    }

    fn kind(&self) -> JsonKind {
        match self {
            Scalar::Null => JsonKind::Null,
            Scalar::Bool(_) => JsonKind::Boolean,
            Scalar::Str(_) => JsonKind::String,
            _ => JsonKind::Number,
        }
    }
}

/// A branch the plan would try for any kind of value, and which this path leaves to it.
fn undecidable(node: &Node) -> bool {
    matches!(
        node,
        Node::Union(_) | Node::Unsupported(_) | Node::Unresolved(_) | Node::Uuid
    )
}

/// Writes a scalar for a non-union node; `false` if it does not fit (nothing written then
/// matters: the caller truncates).
fn encode_scalar(node: &Node, scalar: &Scalar<'_>, out: &mut Vec<u8>) -> bool {
    match (node, scalar) {
        (Node::Null, Scalar::Null) => true,
        (Node::Boolean, Scalar::Bool(b)) => {
            out.push(u8::from(*b));
            true
        }
        (node, s) if s.is_number() => match node.numeric() {
            Some(Numeric::Int) => s.int().map(|i| write_long(out, i64::from(i))).is_some(),
            Some(Numeric::Long) => s.long().map(|l| write_long(out, l)).is_some(),
            Some(Numeric::Float) => match s.double().map(|x| x as f32) {
                Some(f) if !f.is_infinite() => {
                    out.extend_from_slice(&f.to_le_bytes());
                    true
                }
                _ => false,
            },
            Some(Numeric::Double) => s
                .double()
                .map(|d| out.extend_from_slice(&d.to_le_bytes()))
                .is_some(),
            None => false,
        },
        (Node::String, Scalar::Str(s)) => {
            write_bytes(out, s.as_bytes());
            true
        }
        (Node::Bytes, Scalar::Str(s)) => match latin1_bytes(s) {
            Some(bytes) => {
                write_bytes(out, &bytes);
                true
            }
            None => false,
        },
        (Node::Fixed { size, .. }, Scalar::Str(s)) => match latin1_bytes(s) {
            Some(bytes) if bytes.len() == *size => {
                out.extend_from_slice(&bytes);
                true
            }
            _ => false,
        },
        (Node::Enum(e), Scalar::Str(s)) => match e.symbols.iter().position(|sym| sym == s) {
            Some(i) => {
                write_long(out, i as i64);
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// Deserializes one JSON value against `node`, writing its encoding to `out`.
struct NodeSeed<'a, 'p> {
    ctx: &'a mut Ctx<'p>,
    node: &'p Node,
    out: &'a mut Vec<u8>,
    /// The top-level value: its object's `capture` key is captured.
    root: bool,
    /// This value is the captured field's (and also a schema field).
    capture: bool,
}

fn decline<E: de::Error>() -> E {
    E::custom("declined")
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'p> NodeSeed<'_, 'p> {
    fn scalar<E: de::Error>(self, scalar: Scalar<'_>) -> Result<(), E> {
        if self.capture {
            self.ctx.capture_scalar(&scalar);
        }
        let Node::Union(branches) = self.node else {
            return if encode_scalar(self.node, &scalar, self.out) {
                Ok(())
            } else {
                Err(decline())
            };
        };
        if let Scalar::Null = scalar {
            return match branches.iter().position(|b| matches!(b, Node::Null)) {
                Some(i) => {
                    write_long(self.out, i as i64);
                    Ok(())
                }
                None => Err(decline()),
            };
        }
        for (i, branch) in branches.iter().enumerate() {
            if undecidable(branch) {
                return Err(decline());
            }
            if !kind_fits(branch, scalar.kind()) {
                continue;
            }
            let mark = self.out.len();
            write_long(self.out, i as i64);
            if encode_scalar(branch, &scalar, self.out) {
                return Ok(());
            }
            self.out.truncate(mark);
        }
        Err(decline())
    }

    /// The one branch of `self.node` (or the node itself) that takes a composite value:
    /// writes the union index; `None` when the plan would have to try several.
    fn composite(&mut self, kind: JsonKind) -> Option<&'p Node> {
        if self.capture {
            self.ctx.captured = Captured::Other;
        }
        let Node::Union(branches) = self.node else {
            return kind_fits(self.node, kind).then_some(self.node);
        };
        let mut chosen = None;
        for (i, branch) in branches.iter().enumerate() {
            if undecidable(branch) {
                return None;
            }
            if kind_fits(branch, kind) {
                if chosen.is_some() {
                    return None;
                }
                chosen = Some((i, branch));
            }
        }
        let (i, branch) = chosen?;
        write_long(self.out, i as i64);
        Some(branch)
    }
}

impl<'de, 'p> Visitor<'de> for NodeSeed<'_, 'p> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(Scalar::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(Scalar::I64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(Scalar::U64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(Scalar::F64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(Scalar::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let Some(Node::Array(item)) = self.composite(JsonKind::Array) else {
            return Err(decline());
        };
        let mut items = self.ctx.buffer();
        let mut count = 0i64;
        while let Some(()) = seq.next_element_seed(NodeSeed {
            ctx: &mut *self.ctx,
            node: item,
            out: &mut items,
            root: false,
            capture: false,
        })? {
            count += 1;
        }
        if count > 0 {
            write_long(self.out, count);
            self.out.extend_from_slice(&items);
        }
        self.out.push(0);
        self.ctx.give_buffer(items);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<(), A::Error> {
        match self.composite(JsonKind::Object) {
            Some(Node::Record(index)) => {
                let record = &self.ctx.plan.records[*index];
                let capture = self.root;
                record_from_map(self.ctx, record, self.out, capture, map)
            }
            Some(Node::Map(values)) => map_from_map(self.ctx, values, self.out, map),
            _ => Err(decline()),
        }
    }
}

/// A record: fields are written in schema order whatever the key order; fields that arrive
/// in order go straight to `out`, the others wait in a scratch buffer.
fn record_from_map<'de, 'p, A: MapAccess<'de>>(
    ctx: &mut Ctx<'p>,
    record: &'p RecordNode,
    out: &mut Vec<u8>,
    root: bool,
    mut map: A,
) -> Result<(), A::Error> {
    let n = record.fields.len();
    let mut slots = ctx.slots(n);
    let mut later = ctx.buffer();
    let mut written = 0usize;
    let mut hint = 0usize;
    loop {
        let key = map.next_key_seed(FieldKey {
            record,
            hint,
            capture: if root { ctx.capture.as_deref() } else { None },
        })?;
        match key {
            None => break,
            Some(Key::Unknown) => {
                map.next_value::<IgnoredAny>()?;
            }
            Some(Key::CaptureOnly) => {
                let value: serde_json::Value = map.next_value()?;
                ctx.captured = match value {
                    serde_json::Value::Number(n) => Captured::Number(n),
                    _ => Captured::Other,
                };
            }
            Some(Key::Field { index, capture }) => {
                hint = index + 1;
                let node = &record.fields[index].node;
                if index < written {
                    // A repeated key whose first value is already written: the plan keeps the last.
                    return Err(decline());
                }
                if index == written {
                    map.next_value_seed(NodeSeed {
                        ctx: &mut *ctx,
                        node,
                        out: &mut *out,
                        root: false,
                        capture,
                    })?;
                    written += 1;
                    while let Some(Some((a, b))) = slots.get(written) {
                        out.extend_from_slice(&later[*a..*b]);
                        written += 1;
                    }
                } else {
                    let start = later.len();
                    map.next_value_seed(NodeSeed {
                        ctx: &mut *ctx,
                        node,
                        out: &mut later,
                        root: false,
                        capture,
                    })?;
                    slots[index] = Some((start, later.len()));
                }
            }
        }
    }
    for (field, slot) in record.fields.iter().zip(&slots).skip(written) {
        match (slot, &field.default_bytes) {
            (Some((a, b)), _) => out.extend_from_slice(&later[*a..*b]),
            (None, Some(default)) => out.extend_from_slice(default),
            (None, None) => return Err(decline()),
        }
    }
    ctx.give_buffer(later);
    ctx.slots.push(slots);
    Ok(())
}

/// An Avro map: entries sorted by key (the container writer's order), the last of a
/// repeated key kept (as a JSON object's value is).
fn map_from_map<'de, 'p, A: MapAccess<'de>>(
    ctx: &mut Ctx<'p>,
    values: &'p Node,
    out: &mut Vec<u8>,
    mut map: A,
) -> Result<(), A::Error> {
    let mut keys = ctx.buffer();
    let mut encoded = ctx.buffer();
    let mut entries = ctx.entries.pop().unwrap_or_default();
    entries.clear();
    while let Some(key) = map.next_key_seed(KeyBytes { out: &mut keys })? {
        let start = encoded.len();
        map.next_value_seed(NodeSeed {
            ctx: &mut *ctx,
            node: values,
            out: &mut encoded,
            root: false,
            capture: false,
        })?;
        entries.push(Entry {
            key,
            value: (start, encoded.len()),
        });
    }
    let key = |e: &Entry| &keys[e.key.0..e.key.1];
    entries.sort_by(|a, b| key(a).cmp(key(b))); // stable: repeated keys stay in arrival order
    let last_of_key = |i: usize| i + 1 == entries.len() || key(&entries[i + 1]) != key(&entries[i]);
    let unique = (0..entries.len()).filter(|&i| last_of_key(i)).count();
    if unique > 0 {
        write_long(out, unique as i64);
        for (i, entry) in entries.iter().enumerate() {
            if last_of_key(i) {
                write_bytes(out, key(entry));
                out.extend_from_slice(&encoded[entry.value.0..entry.value.1]);
            }
        }
    }
    out.push(0);
    ctx.give_buffer(keys);
    ctx.give_buffer(encoded);
    ctx.entries.push(entries);
    Ok(())
}

enum Key {
    Field { index: usize, capture: bool },
    CaptureOnly,
    Unknown,
}

/// Reads an object key and looks it up among a record's fields (trying the field after the
/// previous key first: keys usually arrive in schema order).
struct FieldKey<'a> {
    record: &'a RecordNode,
    hint: usize,
    capture: Option<&'a str>,
}

impl<'de> DeserializeSeed<'de> for FieldKey<'_> {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldKey<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        let index = match self.record.fields.get(self.hint) {
            Some(field) if field.name == key => Some(self.hint),
            _ => self.record.index.get(key).copied(),
        };
        let capture = self.capture == Some(key);
        Ok(match index {
            Some(index) => Key::Field { index, capture },
            None if capture => Key::CaptureOnly,
            None => Key::Unknown,
        })
    }
}

/// Appends a map key's bytes to `out`, returning their range.
struct KeyBytes<'a> {
    out: &'a mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for KeyBytes<'_> {
    type Value = (usize, usize);

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<(usize, usize), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyBytes<'_> {
    type Value = (usize, usize);

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<(usize, usize), E> {
        let start = self.out.len();
        self.out.extend_from_slice(key.as_bytes());
        Ok((start, self.out.len()))
    }
}

/// The Avro encoding of a value [`CoercionPlan`] built for `node` (used once per schema, for
/// field defaults). `false` for values it cannot encode without the schema (UUIDs).
pub(super) fn encode_value(
    plan: &CoercionPlan,
    node: &Node,
    value: &Value,
    out: &mut Vec<u8>,
) -> bool {
    match (node, value) {
        (Node::Union(branches), Value::Union(i, inner)) => match branches.get(*i as usize) {
            Some(branch) => {
                write_long(out, i64::from(*i));
                encode_value(plan, branch, inner, out)
            }
            None => false,
        },
        (Node::Null, Value::Null) => true,
        (Node::Boolean, Value::Boolean(b)) => {
            out.push(u8::from(*b));
            true
        }
        (Node::Int, Value::Int(i))
        | (Node::Date, Value::Date(i))
        | (Node::TimeMillis, Value::TimeMillis(i)) => {
            write_long(out, i64::from(*i));
            true
        }
        (Node::Long, Value::Long(l))
        | (Node::TimeMicros, Value::TimeMicros(l))
        | (Node::TimestampMillis, Value::TimestampMillis(l))
        | (Node::TimestampMicros, Value::TimestampMicros(l))
        | (Node::TimestampNanos, Value::TimestampNanos(l))
        | (Node::LocalTimestampMillis, Value::LocalTimestampMillis(l))
        | (Node::LocalTimestampMicros, Value::LocalTimestampMicros(l))
        | (Node::LocalTimestampNanos, Value::LocalTimestampNanos(l)) => {
            write_long(out, *l);
            true
        }
        (Node::Float, Value::Float(f)) => {
            out.extend_from_slice(&f.to_le_bytes());
            true
        }
        (Node::Double, Value::Double(d)) => {
            out.extend_from_slice(&d.to_le_bytes());
            true
        }
        (Node::String, Value::String(s)) => {
            write_bytes(out, s.as_bytes());
            true
        }
        (Node::Bytes, Value::Bytes(b)) => {
            write_bytes(out, b);
            true
        }
        (Node::Fixed { size, .. }, Value::Fixed(_, b)) if b.len() == *size => {
            out.extend_from_slice(b);
            true
        }
        (Node::Enum(_), Value::Enum(i, _)) => {
            write_long(out, i64::from(*i));
            true
        }
        (Node::Array(item), Value::Array(items)) => {
            if !items.is_empty() {
                write_long(out, items.len() as i64);
                if !items.iter().all(|v| encode_value(plan, item, v, out)) {
                    return false;
                }
            }
            out.push(0);
            true
        }
        (Node::Map(values), Value::Map(entries)) => {
            if !entries.is_empty() {
                write_long(out, entries.len() as i64);
                let mut sorted: Vec<_> = entries.iter().collect();
                sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (key, v) in sorted {
                    write_bytes(out, key.as_bytes());
                    if !encode_value(plan, values, v, out) {
                        return false;
                    }
                }
            }
            out.push(0);
            true
        }
        (Node::Record(index), Value::Record(fields)) => {
            let record = &plan.records[*index];
            record.fields.len() == fields.len()
                && record
                    .fields
                    .iter()
                    .zip(fields)
                    .all(|(f, (name, v))| f.name == *name && encode_value(plan, &f.node, v, out))
        }
        _ => false,
    }
}
