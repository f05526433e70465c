//! Avro binary encoding of [`Value`]s, deterministic byte for byte.
//!
//! apache-avro's own encoder writes map entries in `HashMap` iteration order, which differs
//! between two `HashMap`s holding the same entries, so the same record could encode to
//! different bytes on a retry. This encoder writes map entries sorted by key (any order is
//! valid Avro) and otherwise produces exactly apache-avro's encoding. It also checks each
//! value against its schema as it goes, reporting the path of the first mismatch.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{Name, SchemaKind, UuidSchema};
use apache_avro::types::Value;

use super::path::Path;

/// A value that does not match the schema it is being written with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EncodeMismatch {
    pub path: String,
    pub reason: String,
}

pub(crate) struct DatumEncoder<'n, 's> {
    names: &'n HashMap<Name, &'s Schema>,
}

pub(crate) fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

pub(crate) fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

impl<'n, 's> DatumEncoder<'n, 's> {
    pub(crate) fn new(names: &'n HashMap<Name, &'s Schema>) -> Self {
        Self { names }
    }

    /// Appends the encoding of `value` to `out`. On error `out` holds a partial encoding that
    /// the caller must discard.
    pub(crate) fn encode(
        &self,
        value: &Value,
        schema: &Schema,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeMismatch> {
        self.encode_at(value, schema, None, out, &Path::Root)
    }

    fn encode_at(
        &self,
        value: &Value,
        schema: &Schema,
        namespace: Option<&str>,
        out: &mut Vec<u8>,
        path: &Path<'_>,
    ) -> Result<(), EncodeMismatch> {
        let mismatch = || EncodeMismatch {
            path: path.to_string(),
            reason: format!(
                "{:?} value does not fit {:?} schema",
                SchemaKind::from(value),
                SchemaKind::from(schema)
            ),
        };
        match (schema, value) {
            (Schema::Ref { name }, _) => {
                let full = name.fully_qualified_name(namespace);
                let (key, target) =
                    self.names
                        .get_key_value(full.as_ref())
                        .ok_or_else(|| EncodeMismatch {
                            path: path.to_string(),
                            reason: format!("unresolved schema reference {}", full.fullname(None)),
                        })?;
                self.encode_at(value, target, key.namespace(), out, path)
            }
            (Schema::Union(union), Value::Union(index, inner)) => {
                let variant =
                    union
                        .variants()
                        .get(*index as usize)
                        .ok_or_else(|| EncodeMismatch {
                            path: path.to_string(),
                            reason: format!(
                                "union branch {index} does not exist (union has {})",
                                union.variants().len()
                            ),
                        })?;
                write_long(out, i64::from(*index));
                self.encode_at(inner, variant, namespace, out, path)
            }
            (Schema::Union(union), _) => {
                match union.find_schema_with_known_schemata(value, Some(self.names), namespace) {
                    Some((index, variant)) => {
                        write_long(out, index as i64);
                        self.encode_at(value, variant, namespace, out, path)
                    }
                    None => Err(mismatch()),
                }
            }
            (Schema::Null, Value::Null) => Ok(()),
            (Schema::Boolean, Value::Boolean(b)) => {
                out.push(u8::from(*b));
                Ok(())
            }
            (Schema::Int, Value::Int(i))
            | (Schema::Date, Value::Date(i) | Value::Int(i))
            | (Schema::TimeMillis, Value::TimeMillis(i) | Value::Int(i))
            | (Schema::Long, Value::Int(i)) => {
                write_long(out, i64::from(*i));
                Ok(())
            }
            (Schema::Long, Value::Long(l))
            | (Schema::TimeMicros, Value::TimeMicros(l) | Value::Long(l))
            | (Schema::TimestampMillis, Value::TimestampMillis(l) | Value::Long(l))
            | (Schema::TimestampMicros, Value::TimestampMicros(l) | Value::Long(l))
            | (Schema::TimestampNanos, Value::TimestampNanos(l) | Value::Long(l))
            | (Schema::LocalTimestampMillis, Value::LocalTimestampMillis(l) | Value::Long(l))
            | (Schema::LocalTimestampMicros, Value::LocalTimestampMicros(l) | Value::Long(l))
            | (Schema::LocalTimestampNanos, Value::LocalTimestampNanos(l) | Value::Long(l)) => {
                write_long(out, *l);
                Ok(())
            }
            (Schema::Float, Value::Float(f)) => {
                out.extend_from_slice(&f.to_le_bytes());
                Ok(())
            }
            (Schema::Double, Value::Double(d)) => {
                out.extend_from_slice(&d.to_le_bytes());
                Ok(())
            }
            (Schema::Double, Value::Float(f)) => {
                out.extend_from_slice(&f64::from(*f).to_le_bytes());
                Ok(())
            }
            (Schema::Bytes | Schema::Uuid(UuidSchema::Bytes), Value::Bytes(b)) => {
                write_bytes(out, b);
                Ok(())
            }
            (Schema::String | Schema::Uuid(UuidSchema::String), Value::String(s)) => {
                write_bytes(out, s.as_bytes());
                Ok(())
            }
            (
                Schema::Fixed(fixed) | Schema::Uuid(UuidSchema::Fixed(fixed)),
                Value::Fixed(_, b) | Value::Bytes(b),
            ) => {
                if b.len() != fixed.size {
                    return Err(EncodeMismatch {
                        path: path.to_string(),
                        reason: format!(
                            "{} bytes for fixed {} of {} bytes",
                            b.len(),
                            fixed.name.fullname(namespace),
                            fixed.size
                        ),
                    });
                }
                out.extend_from_slice(b);
                Ok(())
            }
            (Schema::Uuid(kind), Value::Uuid(uuid)) => {
                match kind {
                    UuidSchema::String => {
                        let mut buf = [0u8; 36];
                        write_bytes(out, uuid.hyphenated().encode_lower(&mut buf).as_bytes());
                    }
                    UuidSchema::Bytes => write_bytes(out, uuid.as_bytes()),
                    UuidSchema::Fixed(fixed) if fixed.size == 16 => {
                        out.extend_from_slice(uuid.as_bytes());
                    }
                    UuidSchema::Fixed(_) => return Err(mismatch()),
                }
                Ok(())
            }
            (Schema::Enum(e), Value::Enum(index, symbol)) => {
                if e.symbols.get(*index as usize) != Some(symbol) {
                    return Err(EncodeMismatch {
                        path: path.to_string(),
                        reason: format!(
                            "symbol {symbol:?} is not at position {index} of enum {}",
                            e.name.fullname(namespace)
                        ),
                    });
                }
                write_long(out, i64::from(*index));
                Ok(())
            }
            (Schema::Enum(e), Value::String(symbol)) => {
                match e.symbols.iter().position(|s| s == symbol) {
                    Some(index) => {
                        write_long(out, index as i64);
                        Ok(())
                    }
                    None => Err(EncodeMismatch {
                        path: path.to_string(),
                        reason: format!(
                            "{symbol:?} is not a symbol of enum {}",
                            e.name.fullname(namespace)
                        ),
                    }),
                }
            }
            (Schema::Array(array), Value::Array(items)) => {
                if !items.is_empty() {
                    write_long(out, items.len() as i64);
                    for (i, item) in items.iter().enumerate() {
                        self.encode_at(item, &array.items, namespace, out, &Path::Index(path, i))?;
                    }
                }
                out.push(0);
                Ok(())
            }
            (Schema::Map(map), Value::Map(entries)) => {
                if !entries.is_empty() {
                    write_long(out, entries.len() as i64);
                    let mut sorted: Vec<(&String, &Value)> = entries.iter().collect();
                    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
                    for (key, item) in sorted {
                        write_bytes(out, key.as_bytes());
                        self.encode_at(item, &map.types, namespace, out, &Path::Key(path, key))?;
                    }
                }
                out.push(0);
                Ok(())
            }
            (Schema::Record(record), Value::Record(values)) => {
                let inner_namespace = record.name.namespace().or(namespace);
                for (i, field) in record.fields.iter().enumerate() {
                    // Values built from the schema are in field order; fall back to a search.
                    let value = match values.get(i) {
                        Some((name, v)) if *name == field.name => v,
                        _ => values
                            .iter()
                            .find(|(name, _)| *name == field.name)
                            .map(|(_, v)| v)
                            .ok_or_else(|| EncodeMismatch {
                                path: Path::Key(path, &field.name).to_string(),
                                reason: format!(
                                    "record {} has no value for this field",
                                    record.name.fullname(namespace)
                                ),
                            })?,
                    };
                    self.encode_at(
                        value,
                        &field.schema,
                        inner_namespace,
                        out,
                        &Path::Key(path, &field.name),
                    )?;
                }
                Ok(())
            }
            (Schema::Duration(_), Value::Duration(d)) => {
                out.extend_from_slice(&<[u8; 12]>::from(*d));
                Ok(())
            }
            (Schema::Duration(_), Value::Fixed(12, b)) => {
                out.extend_from_slice(b);
                Ok(())
            }
            (
                Schema::Decimal(_) | Schema::BigDecimal,
                Value::Decimal(_) | Value::BigDecimal(_) | Value::Bytes(_) | Value::Fixed(..),
            ) => {
                // Rare and self-contained (no references): let apache-avro encode it.
                apache_avro::writer::datum::GenericDatumWriter::builder(schema)
                    .build()
                    .and_then(|w| w.write_value_ref(out, value))
                    .map(drop)
                    .map_err(|e| EncodeMismatch {
                        path: path.to_string(),
                        reason: e.to_string(),
                    })
            }
            _ => Err(mismatch()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::schema::ResolvedSchema;

    #[test]
    fn zigzag_varints_match_the_avro_spec() {
        let cases: [(i64, &[u8]); 7] = [
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (
                i64::MAX,
                &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
            (
                i64::MIN,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for (n, expected) in cases {
            let mut out = Vec::new();
            write_long(&mut out, n);
            assert_eq!(out, expected, "{n}");
        }
    }

    #[test]
    fn map_entries_are_written_in_key_order() {
        let schema = Schema::parse_str(r#"{"type":"map","values":"int"}"#).unwrap();
        let resolved = ResolvedSchema::new(&schema).unwrap();
        let encoder = DatumEncoder::new(resolved.get_names());
        let mut first = Vec::new();
        let mut second = Vec::new();
        let keys = ["k7", "a", "zz", "m", "b2", "k1", "q", "x"];
        let forward: HashMap<String, Value> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.to_string(), Value::Int(i as i32)))
            .collect();
        let backward: HashMap<String, Value> = keys
            .iter()
            .enumerate()
            .rev()
            .map(|(i, k)| (k.to_string(), Value::Int(i as i32)))
            .collect();
        encoder
            .encode(&Value::Map(forward), &schema, &mut first)
            .unwrap();
        encoder
            .encode(&Value::Map(backward), &schema, &mut second)
            .unwrap();
        assert_eq!(first, second);
        // count 8, then "a" (len 1 -> 0x02, 'a') first.
        assert_eq!(&first[..3], &[0x10, 0x02, b'a']);
    }
}
