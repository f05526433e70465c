//! CloudWatch Embedded Metric Format (EMF).
//!
//! A [`Metrics`] collects counters during one invocation and [`Metrics::emit`]
//! prints them as one EMF JSON line on stdout; CloudWatch Logs turns that
//! line into metrics without any API call (nothing to throttle, nothing to
//! retry, no latency added to the handler).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// Counters for one invocation under one namespace and dimension set.
#[derive(Debug, Clone)]
pub struct Metrics {
    namespace: String,
    dimensions: BTreeMap<String, String>,
    values: BTreeMap<String, (f64, &'static str)>,
}

impl Metrics {
    /// Metrics under `namespace` with a `Function` dimension.
    pub fn new(namespace: &str, function: &str) -> Self {
        let mut dimensions = BTreeMap::new();
        dimensions.insert("Function".to_string(), function.to_string());
        Metrics {
            namespace: namespace.to_string(),
            dimensions,
            values: BTreeMap::new(),
        }
    }

    /// For the running function: namespace `sluice`, `Function` from `AWS_LAMBDA_FUNCTION_NAME`.
    pub fn for_function() -> Self {
        let name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
        Metrics::new("sluice", &name)
    }

    /// Adds `n` to the counter `name`.
    pub fn count(&mut self, name: &str, n: u64) -> &mut Self {
        let entry = self
            .values
            .entry(name.to_string())
            .or_insert((0.0, "Count"));
        entry.0 += n as f64;
        self
    }

    /// Sets a value with a unit (`Milliseconds`, `Bytes`, …); the last one wins.
    pub fn value(&mut self, name: &str, v: f64, unit: &'static str) -> &mut Self {
        self.values.insert(name.to_string(), (v, unit));
        self
    }

    /// The current value of a metric (tests and summaries).
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).map(|(v, _)| *v)
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The EMF document for the values so far.
    pub fn to_emf(&self, timestamp_ms: u128) -> Value {
        let dims: Vec<&String> = self.dimensions.keys().collect();
        let defs: Vec<Value> = self
            .values
            .iter()
            .map(|(name, (_, unit))| json!({ "Name": name, "Unit": unit }))
            .collect();
        let mut doc = Map::new();
        doc.insert(
            "_aws".to_string(),
            json!({
                "Timestamp": timestamp_ms as u64,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [dims],
                    "Metrics": defs,
                }],
            }),
        );
        for (k, v) in &self.dimensions {
            doc.insert(k.clone(), Value::String(v.clone()));
        }
        for (name, (v, _)) in &self.values {
            doc.insert(name.clone(), json!(v));
        }
        Value::Object(doc)
    }

    /// Prints the EMF line on stdout (nothing when empty) and clears the values.
    pub fn emit(&mut self) {
        if self.values.is_empty() {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        println!("{}", self.to_emf(now));
        self.values.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_declares_every_metric_and_carries_values() {
        let mut m = Metrics::new("sluice", "crash-router");
        m.count("Accepted", 2)
            .count("Accepted", 1)
            .count("Skipped.malformed_id", 1);
        m.value("BatchMillis", 12.5, "Milliseconds");
        let doc = m.to_emf(1_700_000_000_000);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "sluice");
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Accepted", "BatchMillis", "Skipped.malformed_id"]);
        assert_eq!(doc["Function"], "crash-router");
        assert_eq!(doc["Accepted"], json!(3.0));
        assert_eq!(doc["BatchMillis"], json!(12.5));
        assert_eq!(doc["_aws"]["Timestamp"], json!(1_700_000_000_000u64));
    }

    #[test]
    fn emit_clears_values() {
        let mut m = Metrics::new("sluice", "f");
        m.count("A", 1);
        m.emit();
        assert!(m.is_empty());
    }
}
