//! JSON → Avro value coercion, driven by a [`CoercionPlan`] compiled once per schema.
//!
//! The plan resolves named references (`Schema::Ref`), precomputes field defaults and enum
//! symbol tables, so coercing a record walks only the JSON value and the plan: no schema is
//! cloned and no error text is built unless a record is rejected.
//!
//! Rules, per schema type:
//!
//! | schema | accepted JSON | notes |
//! |---|---|---|
//! | `null` | `null` | |
//! | `boolean` | `true`/`false` | |
//! | `int`, `long` | whole numbers | range-checked; `3.0` is fine, `3.5` is not |
//! | `float`, `double` | any number | integers are fine; a `float` must fit in `f32` |
//! | `string` | string | |
//! | `bytes`, `fixed` | string | ISO-8859-1 code points (Avro's JSON encoding), so `"\u00ff"` is byte `0xff`; `fixed` checks the length |
//! | `enum` | string | must be one of the symbols |
//! | `array`, `map` | array, object | items/values coerced recursively |
//! | `record` | object | missing field → schema default, else error; extra JSON fields ignored |
//! | union | per branch | JSON `null` → the `null` branch; otherwise the first branch the value fits |
//! | `date`, `time-millis` | whole numbers (int) | |
//! | `time-micros`, `timestamp-*`, `local-timestamp-*` | whole numbers (long) | |
//! | `uuid` | string | textual UUID, parsed and validated (for string, bytes and fixed UUIDs) |
//!
//! `decimal`, `big-decimal` and `duration` are not coerced from JSON: a value for them is
//! rejected with an error naming its path (a nullable field of such a type still accepts
//! `null`).

use std::collections::HashMap;
use std::fmt::Write as _;

use apache_avro::Schema;
use apache_avro::schema::{Name, ResolvedSchema};
use apache_avro::types::Value;
use serde_json::Value as Json;

use super::path::Path;

/// A JSON value that does not fit the schema, with where and why.
///
/// Displays as `at $.device.os_version: expected string, found number 12`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at {path}: expected {expected}, found {found}")]
pub struct CoerceError {
    /// Where in the JSON value, e.g. `$.device.os_version` or `$.tags[3]`.
    pub path: String,
    /// The Avro type the schema wants there, e.g. `string`, `int`, `enum Platform (one of ios, android)`.
    pub expected: String,
    /// What the JSON holds there, e.g. `number 12`, `null`, `missing field (no default in schema)`.
    pub found: String,
}

impl CoerceError {
    fn new(path: &Path<'_>, expected: String, found: impl Into<String>) -> Self {
        Self {
            path: path.to_string(),
            expected,
            found: found.into(),
        }
    }
}

/// A schema compiled for coercing many JSON values: build it once (per schema, e.g. at cold
/// start), then call [`CoercionPlan::coerce`] per record.
#[derive(Debug, Clone)]
pub struct CoercionPlan {
    pub(super) root: Node,
    pub(super) records: Vec<RecordNode>,
}

#[derive(Debug, Clone)]
pub(super) enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed {
        name: String,
        size: usize,
    },
    Enum(Box<EnumNode>),
    Array(Box<Node>),
    Map(Box<Node>),
    Union(Vec<Node>),
    /// Index into [`CoercionPlan::records`]; records may be recursive.
    Record(usize),
    Date,
    TimeMillis,
    TimeMicros,
    TimestampMillis,
    TimestampMicros,
    TimestampNanos,
    LocalTimestampMillis,
    LocalTimestampMicros,
    LocalTimestampNanos,
    Uuid,
    Unsupported(&'static str),
    Unresolved(String),
}

#[derive(Debug, Clone)]
pub(super) struct EnumNode {
    pub(super) name: String,
    pub(super) symbols: Vec<String>,
}

#[derive(Debug, Clone)]
pub(super) struct RecordNode {
    pub(super) name: String,
    pub(super) fields: Vec<FieldNode>,
    /// Field name → position in `fields`, for JSON objects whose keys are not in schema order.
    pub(super) index: HashMap<String, usize>,
}

#[derive(Debug, Clone)]
pub(super) struct FieldNode {
    pub(super) name: String,
    pub(super) node: Node,
    /// The schema default, coerced once; `Err` holds why the default does not fit.
    pub(super) default: Option<Result<Value, String>>,
    /// The default's Avro encoding, for [`JsonEncoder`](super::JsonEncoder) (`None` when
    /// there is no usable default or it cannot be encoded without the schema, e.g. a UUID).
    pub(super) default_bytes: Option<Vec<u8>>,
}

/// Coerces one JSON value for `schema`.
///
/// Convenience for one-off values: it compiles a [`CoercionPlan`] on every call. For many
/// records, build the plan once and use [`CoercionPlan::coerce`].
pub fn coerce(json: &Json, schema: &Schema) -> Result<Value, CoerceError> {
    CoercionPlan::new(schema).coerce(json)
}

impl CoercionPlan {
    /// Compiles `schema` (resolving its named references) into a plan.
    ///
    /// Never fails: parts of the schema that cannot be coerced (an unresolvable reference,
    /// `decimal`, a default that does not fit its field) are reported by [`coerce`](Self::coerce)
    /// with the path of the value that needs them.
    pub fn new(schema: &Schema) -> Self {
        let resolved = ResolvedSchema::new(schema).ok();
        let empty = HashMap::new();
        let names = resolved.as_ref().map_or(&empty, |r| r.get_names());
        let mut builder = Builder {
            names,
            record_index: HashMap::new(),
            records: Vec::new(),
            defaults: Vec::new(),
        };
        let root = builder.compile(schema, None);
        let mut plan = CoercionPlan {
            root,
            records: builder.records,
        };
        // Defaults are coerced after every record is compiled, so they may use any of them.
        for (record, field, json) in builder.defaults {
            let node = &plan.records[record].fields[field].node;
            let default = plan
                .coerce_node(&json, node, &Path::Root)
                .map_err(|e| format!("schema default {json} does not fit: {e}"));
            let bytes = default.as_ref().ok().and_then(|value| {
                let mut out = Vec::new();
                super::direct::encode_value(&plan, node, value, &mut out).then_some(out)
            });
            let slot = &mut plan.records[record].fields[field];
            slot.default = Some(default);
            slot.default_bytes = bytes;
        }
        plan
    }

    /// Converts a JSON value into the Avro value the schema describes.
    pub fn coerce(&self, json: &Json) -> Result<Value, CoerceError> {
        self.coerce_node(json, &self.root, &Path::Root)
    }

    fn coerce_node(&self, json: &Json, node: &Node, path: &Path<'_>) -> Result<Value, CoerceError> {
        let mismatch = || CoerceError::new(path, self.describe(node), describe_json(json));
        match (node, json) {
            (Node::Union(branches), _) => self.coerce_union(json, branches, path),
            (Node::Null, Json::Null) => Ok(Value::Null),
            (Node::Boolean, Json::Bool(b)) => Ok(Value::Boolean(*b)),
            (Node::Int, Json::Number(n)) => Ok(Value::Int(self.int(n, node, path)?)),
            (Node::Long, Json::Number(n)) => Ok(Value::Long(self.long(n, node, path)?)),
            (Node::Float, Json::Number(n)) => {
                let x = n.as_f64().ok_or_else(mismatch)?;
                let f = x as f32;
                if f.is_infinite() {
                    return Err(CoerceError::new(
                        path,
                        self.describe(node),
                        format!("number {n} (out of range for float)"),
                    ));
                }
                Ok(Value::Float(f))
            }
            (Node::Double, Json::Number(n)) => Ok(Value::Double(n.as_f64().ok_or_else(mismatch)?)),
            (Node::String, Json::String(s)) => Ok(Value::String(s.clone())),
            (Node::Bytes, Json::String(s)) => Ok(Value::Bytes(self.latin1(s, node, path)?)),
            (Node::Fixed { size, .. }, Json::String(s)) => {
                let bytes = self.latin1(s, node, path)?;
                if bytes.len() != *size {
                    return Err(CoerceError::new(
                        path,
                        self.describe(node),
                        format!("string of {} bytes", bytes.len()),
                    ));
                }
                Ok(Value::Fixed(*size, bytes))
            }
            (Node::Enum(e), Json::String(s)) => match e.symbols.iter().position(|sym| sym == s) {
                Some(i) => Ok(Value::Enum(i as u32, s.clone())),
                None => Err(mismatch()),
            },
            (Node::Array(item), Json::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, j)| self.coerce_node(j, item, &Path::Index(path, i)))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            (Node::Map(value), Json::Object(entries)) => {
                let mut map = HashMap::with_capacity(entries.len());
                for (k, j) in entries {
                    let v = self.coerce_node(j, value, &Path::Key(path, k))?;
                    map.insert(k.clone(), v);
                }
                Ok(Value::Map(map))
            }
            (Node::Record(index), Json::Object(entries)) => {
                let record = &self.records[*index];
                let mut fields = Vec::with_capacity(record.fields.len());
                for field in &record.fields {
                    let field_path = Path::Key(path, &field.name);
                    let value = match entries.get(&field.name) {
                        Some(j) => self.coerce_node(j, &field.node, &field_path)?,
                        None => match &field.default {
                            Some(Ok(default)) => default.clone(),
                            Some(Err(why)) => {
                                return Err(CoerceError::new(
                                    &field_path,
                                    self.describe(&field.node),
                                    format!("missing field ({why})"),
                                ));
                            }
                            None => {
                                return Err(CoerceError::new(
                                    &field_path,
                                    self.describe(&field.node),
                                    "missing field (no default in schema)",
                                ));
                            }
                        },
                    };
                    fields.push((field.name.clone(), value));
                }
                Ok(Value::Record(fields))
            }
            (Node::Date, Json::Number(n)) => Ok(Value::Date(self.int(n, node, path)?)),
            (Node::TimeMillis, Json::Number(n)) => Ok(Value::TimeMillis(self.int(n, node, path)?)),
            (Node::TimeMicros, Json::Number(n)) => Ok(Value::TimeMicros(self.long(n, node, path)?)),
            (Node::TimestampMillis, Json::Number(n)) => {
                Ok(Value::TimestampMillis(self.long(n, node, path)?))
            }
            (Node::TimestampMicros, Json::Number(n)) => {
                Ok(Value::TimestampMicros(self.long(n, node, path)?))
            }
            (Node::TimestampNanos, Json::Number(n)) => {
                Ok(Value::TimestampNanos(self.long(n, node, path)?))
            }
            (Node::LocalTimestampMillis, Json::Number(n)) => {
                Ok(Value::LocalTimestampMillis(self.long(n, node, path)?))
            }
            (Node::LocalTimestampMicros, Json::Number(n)) => {
                Ok(Value::LocalTimestampMicros(self.long(n, node, path)?))
            }
            (Node::LocalTimestampNanos, Json::Number(n)) => {
                Ok(Value::LocalTimestampNanos(self.long(n, node, path)?))
            }
            (Node::Uuid, Json::String(s)) => apache_avro::Uuid::parse_str(s)
                .map(Value::Uuid)
                .map_err(|_| mismatch()),
            _ => Err(mismatch()),
        }
    }

    fn coerce_union(
        &self,
        json: &Json,
        branches: &[Node],
        path: &Path<'_>,
    ) -> Result<Value, CoerceError> {
        let union_mismatch = || {
            let mut expected = String::from("one of ");
            for (i, b) in branches.iter().enumerate() {
                if i > 0 {
                    expected.push_str(", ");
                }
                expected.push_str(&self.describe(b));
            }
            CoerceError::new(path, expected, describe_json(json))
        };
        if json.is_null() {
            return match branches.iter().position(|b| matches!(b, Node::Null)) {
                Some(i) => Ok(Value::Union(i as u32, Box::new(Value::Null))),
                None => Err(union_mismatch()),
            };
        }
        let mut first_error = None;
        let mut candidates = 0;
        for (i, branch) in branches.iter().enumerate() {
            if !kind_fits(branch, JsonKind::of(json)) {
                continue;
            }
            match self.coerce_node(json, branch, path) {
                Ok(v) => return Ok(Value::Union(i as u32, Box::new(v))),
                Err(e) => {
                    candidates += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        // `["null", T]`: report T's own error (it may point deeper into the value).
        let mut non_null = branches.iter().filter(|b| !matches!(b, Node::Null));
        if let (Some(only), None) = (non_null.next(), non_null.next()) {
            return Err(first_error.unwrap_or_else(|| {
                CoerceError::new(path, self.describe(only), describe_json(json))
            }));
        }
        match (candidates, first_error) {
            (1, Some(e)) => Err(e),
            _ => Err(union_mismatch()),
        }
    }

    fn int(
        &self,
        n: &serde_json::Number,
        node: &Node,
        path: &Path<'_>,
    ) -> Result<i32, CoerceError> {
        let wide = self.long(n, node, path)?;
        i32::try_from(wide).map_err(|_| {
            CoerceError::new(
                path,
                self.describe(node),
                format!("number {n} (out of range for int)"),
            )
        })
    }

    fn long(
        &self,
        n: &serde_json::Number,
        node: &Node,
        path: &Path<'_>,
    ) -> Result<i64, CoerceError> {
        if let Some(i) = n.as_i64() {
            return Ok(i);
        }
        let range = || {
            CoerceError::new(
                path,
                self.describe(node),
                format!("number {n} (out of range for {})", self.describe(node)),
            )
        };
        if n.is_u64() {
            return Err(range());
        }
        let x = n.as_f64().unwrap_or(f64::NAN);
        if x.fract() != 0.0 || !x.is_finite() {
            return Err(CoerceError::new(
                path,
                self.describe(node),
                format!("number {n} (not a whole number)"),
            ));
        }
        // 2^63 is exactly representable; everything below it that is whole fits in i64.
        if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&x) {
            Ok(x as i64)
        } else {
            Err(range())
        }
    }

    fn latin1(&self, s: &str, node: &Node, path: &Path<'_>) -> Result<Vec<u8>, CoerceError> {
        latin1_bytes(s).ok_or_else(|| {
            CoerceError::new(
                path,
                self.describe(node),
                format!(
                    "{} (bytes are written as ISO-8859-1 code points \\u0000-\\u00ff)",
                    describe_json(&Json::String(s.to_owned()))
                ),
            )
        })
    }

    fn describe(&self, node: &Node) -> String {
        match node {
            Node::Null => "null".into(),
            Node::Boolean => "boolean".into(),
            Node::Int => "int".into(),
            Node::Long => "long".into(),
            Node::Float => "float".into(),
            Node::Double => "double".into(),
            Node::Bytes => "bytes".into(),
            Node::String => "string".into(),
            Node::Fixed { name, size } => format!("fixed {name} ({size} bytes)"),
            Node::Enum(e) => {
                let mut s = format!("enum {} (one of ", e.name);
                for (i, sym) in e.symbols.iter().enumerate() {
                    if i == 8 {
                        let _ = write!(s, ", … {} more", e.symbols.len() - 8);
                        break;
                    }
                    if i > 0 {
                        s.push_str(", ");
                    }
                    s.push_str(sym);
                }
                s.push(')');
                s
            }
            Node::Array(item) => format!("array of {}", self.describe(item)),
            Node::Map(value) => format!("map of {}", self.describe(value)),
            Node::Union(branches) => {
                let parts: Vec<String> = branches.iter().map(|b| self.describe(b)).collect();
                format!("one of {}", parts.join(", "))
            }
            Node::Record(i) => format!("record {}", self.records[*i].name),
            Node::Date => "date (int, days since 1970-01-01)".into(),
            Node::TimeMillis => "time-millis (int)".into(),
            Node::TimeMicros => "time-micros (long)".into(),
            Node::TimestampMillis => "timestamp-millis (long)".into(),
            Node::TimestampMicros => "timestamp-micros (long)".into(),
            Node::TimestampNanos => "timestamp-nanos (long)".into(),
            Node::LocalTimestampMillis => "local-timestamp-millis (long)".into(),
            Node::LocalTimestampMicros => "local-timestamp-micros (long)".into(),
            Node::LocalTimestampNanos => "local-timestamp-nanos (long)".into(),
            Node::Uuid => "uuid string".into(),
            Node::Unsupported(what) => format!("{what} (not supported by JSON coercion)"),
            Node::Unresolved(name) => format!("{name} (unresolved schema reference)"),
        }
    }
}

/// A JSON string as the bytes of Avro's JSON encoding of `bytes`/`fixed`: each code point
/// one byte (ISO-8859-1); `None` if one is above `\u00ff`.
pub(super) fn latin1_bytes(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// The Avro primitive a node writes a JSON number as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Numeric {
    /// `int` and the logical types on it (`date`, `time-millis`).
    Int,
    /// `long` and the logical types on it (`time-micros`, the timestamps).
    Long,
    Float,
    Double,
}

impl Node {
    /// How this node takes a JSON number; `None` if it takes none.
    pub(super) fn numeric(&self) -> Option<Numeric> {
        match self {
            Node::Int | Node::Date | Node::TimeMillis => Some(Numeric::Int),
            Node::Long
            | Node::TimeMicros
            | Node::TimestampMillis
            | Node::TimestampMicros
            | Node::TimestampNanos
            | Node::LocalTimestampMillis
            | Node::LocalTimestampMicros
            | Node::LocalTimestampNanos => Some(Numeric::Long),
            Node::Float => Some(Numeric::Float),
            Node::Double => Some(Numeric::Double),
            _ => None,
        }
    }
}

/// The kind of a JSON value, as far as choosing a union branch goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JsonKind {
    Null,
    Boolean,
    Number,
    String,
    Array,
    Object,
}

impl JsonKind {
    fn of(json: &Json) -> Self {
        match json {
            Json::Null => JsonKind::Null,
            Json::Bool(_) => JsonKind::Boolean,
            Json::Number(_) => JsonKind::Number,
            Json::String(_) => JsonKind::String,
            Json::Array(_) => JsonKind::Array,
            Json::Object(_) => JsonKind::Object,
        }
    }
}

/// Whether a branch could possibly accept a JSON value of this kind (cheap pre-check before
/// trying a union branch).
pub(super) fn kind_fits(node: &Node, kind: JsonKind) -> bool {
    match node {
        Node::Null => kind == JsonKind::Null,
        Node::Boolean => kind == JsonKind::Boolean,
        Node::String | Node::Bytes | Node::Fixed { .. } | Node::Enum(_) | Node::Uuid => {
            kind == JsonKind::String
        }
        Node::Array(_) => kind == JsonKind::Array,
        Node::Map(_) | Node::Record(_) => kind == JsonKind::Object,
        Node::Union(_) | Node::Unsupported(_) | Node::Unresolved(_) => true,
        numeric => numeric.numeric().is_some() && kind == JsonKind::Number,
    }
}

fn describe_json(json: &Json) -> String {
    match json {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("boolean {b}"),
        Json::Number(n) => format!("number {n}"),
        Json::String(s) => {
            const MAX: usize = 40;
            match s.char_indices().nth(MAX) {
                Some((cut, _)) => format!("string {:?}…", &s[..cut]),
                None => format!("string {s:?}"),
            }
        }
        Json::Array(items) => format!("array of {} items", items.len()),
        Json::Object(_) => "object".into(),
    }
}

struct Builder<'n, 's> {
    names: &'n HashMap<Name, &'s Schema>,
    record_index: HashMap<String, usize>,
    records: Vec<RecordNode>,
    /// (record, field, default JSON) to coerce once all records exist.
    defaults: Vec<(usize, usize, Json)>,
}

impl Builder<'_, '_> {
    fn compile(&mut self, schema: &Schema, namespace: Option<&str>) -> Node {
        match schema {
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int => Node::Int,
            Schema::Long => Node::Long,
            Schema::Float => Node::Float,
            Schema::Double => Node::Double,
            Schema::Bytes => Node::Bytes,
            Schema::String => Node::String,
            Schema::Fixed(f) => Node::Fixed {
                name: f.name.fullname(namespace),
                size: f.size,
            },
            Schema::Enum(e) => Node::Enum(Box::new(EnumNode {
                name: e.name.fullname(namespace),
                symbols: e.symbols.clone(),
            })),
            Schema::Array(a) => Node::Array(Box::new(self.compile(&a.items, namespace))),
            Schema::Map(m) => Node::Map(Box::new(self.compile(&m.types, namespace))),
            Schema::Union(u) => Node::Union(
                u.variants()
                    .iter()
                    .map(|v| self.compile(v, namespace))
                    .collect(),
            ),
            Schema::Record(r) => {
                let full = r.name.fullname(namespace);
                if let Some(&index) = self.record_index.get(&full) {
                    return Node::Record(index);
                }
                let index = self.records.len();
                self.records.push(RecordNode {
                    name: full.clone(),
                    fields: Vec::new(),
                    index: HashMap::new(),
                });
                self.record_index.insert(full, index);
                let inner_namespace = r.name.namespace().or(namespace);
                let mut fields = Vec::with_capacity(r.fields.len());
                for (i, f) in r.fields.iter().enumerate() {
                    if let Some(default) = &f.default {
                        self.defaults.push((index, i, default.clone()));
                    }
                    fields.push(FieldNode {
                        name: f.name.clone(),
                        node: self.compile(&f.schema, inner_namespace),
                        default: None,
                        default_bytes: None,
                    });
                }
                self.records[index].index = fields
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (f.name.clone(), i))
                    .collect();
                self.records[index].fields = fields;
                Node::Record(index)
            }
            Schema::Ref { name } => {
                let full = name.fully_qualified_name(namespace);
                if let Some(&index) = self.record_index.get(&full.fullname(None)) {
                    return Node::Record(index);
                }
                match self.names.get_key_value(full.as_ref()) {
                    Some((key, target)) => self.compile(target, key.namespace()),
                    None => Node::Unresolved(full.fullname(None)),
                }
            }
            Schema::Date => Node::Date,
            Schema::TimeMillis => Node::TimeMillis,
            Schema::TimeMicros => Node::TimeMicros,
            Schema::TimestampMillis => Node::TimestampMillis,
            Schema::TimestampMicros => Node::TimestampMicros,
            Schema::TimestampNanos => Node::TimestampNanos,
            Schema::LocalTimestampMillis => Node::LocalTimestampMillis,
            Schema::LocalTimestampMicros => Node::LocalTimestampMicros,
            Schema::LocalTimestampNanos => Node::LocalTimestampNanos,
            Schema::Uuid(_) => Node::Uuid,
            Schema::Decimal(_) => Node::Unsupported("decimal"),
            Schema::BigDecimal => Node::Unsupported("big-decimal"),
            Schema::Duration(_) => Node::Unsupported("duration"),
        }
    }
}
