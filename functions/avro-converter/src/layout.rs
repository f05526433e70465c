//! Object keys the converter writes, all derived from the input key so that reprocessing an
//! input rewrites exactly the same keys:
//!
//! | what | key |
//! |---|---|
//! | Avro, one per UTC hour | `<output-prefix>year=YYYY/month=MM/day=DD/hour=HH/<stem>.<tag>.avro` |
//! | rejected records / input reason | `<error-prefix><input-dir>/<stem>.errors.jsonl` |
//! | copy of a rejected input | `<error-prefix><input-key>` |
//!
//! `<stem>` is the input file name without its `.snappy` and `.json` suffixes; `<tag>` is
//! [`sluice_partition::source_tag`] of the whole input key, so inputs sharing a file name in
//! different directories write different Avro files (and the same input the same one).

use sluice_partition::HourPartition;

use crate::config::AVRO_SUFFIX;

/// Compression suffixes stripped from file names, then content suffixes.
const COMPRESSION_SUFFIXES: &[&str] = &[".snappy", ".sz"];
const CONTENT_SUFFIXES: &[&str] = &[".json", ".ndjson", ".jsonl"];

/// The input file name without directory and without `.json.snappy` (or `.sz`, `.ndjson`,
/// `.jsonl`) suffixes; the whole file name if nothing else would be left.
pub fn stem(key: &str) -> &str {
    let name = key.rsplit('/').next().unwrap_or(key);
    let mut stem = name;
    for suffixes in [COMPRESSION_SUFFIXES, CONTENT_SUFFIXES] {
        if let Some(stripped) = suffixes.iter().find_map(|s| stem.strip_suffix(s)) {
            stem = stripped;
        }
    }
    if stem.is_empty() { name } else { stem }
}

/// `<stem>.<tag>`: the name of every Avro file of an input (one per hour).
pub fn output_name(input_key: &str) -> String {
    format!(
        "{}.{}",
        stem(input_key),
        sluice_partition::source_tag(input_key)
    )
}

/// The key of the Avro file holding an input's records of one hour; `name` is
/// [`output_name`] of the input key.
pub fn avro_key(output_prefix: &str, hour: &HourPartition, name: &str) -> String {
    format!("{output_prefix}{}{name}{AVRO_SUFFIX}", hour.hive_path())
}

/// The key of the errors file of an input.
pub fn errors_key(error_prefix: &str, input_key: &str) -> String {
    let dir = match input_key.rfind('/') {
        Some(at) => &input_key[..=at],
        None => "",
    };
    format!("{error_prefix}{dir}{}.errors.jsonl", stem(input_key))
}

/// Where a rejected input is copied.
pub fn rejected_input_key(error_prefix: &str, input_key: &str) -> String {
    format!("{error_prefix}{input_key}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_partition::PartitionTime;

    #[test]
    fn stem_drops_directory_and_both_suffixes() {
        assert_eq!(
            stem("raw/2024/05/14/player-0001.json.snappy"),
            "player-0001"
        );
        assert_eq!(stem("a.ndjson.sz"), "a");
        assert_eq!(stem("raw/a.snappy"), "a");
        assert_eq!(stem("raw/a.json"), "a");
        // Only the last suffix of each kind, and dots inside the name stay.
        assert_eq!(stem("raw/v1.2.events.json.snappy"), "v1.2.events");
        assert_eq!(stem("raw/.json.snappy"), ".json.snappy");
    }

    #[test]
    fn avro_key_is_the_hive_hour_path_in_utc() {
        // 2024-03-09T23:30:00Z
        let hour = PartitionTime::from_epoch_millis(1_710_027_000_000)
            .unwrap()
            .hour();
        assert_eq!(
            avro_key("avro/", &hour, "player-0001"),
            "avro/year=2024/month=03/day=09/hour=23/player-0001.avro"
        );
        assert_eq!(
            avro_key("", &hour, "x"),
            "year=2024/month=03/day=09/hour=23/x.avro"
        );
    }

    #[test]
    fn inputs_sharing_a_file_name_get_their_own_output_name() {
        let a = output_name("incoming/a/p.json.snappy");
        let b = output_name("incoming/b/p.json.snappy");
        assert_ne!(a, b);
        assert_eq!(a, output_name("incoming/a/p.json.snappy"));
        assert!(a.starts_with("p.") && a.len() == "p.".len() + 16, "{a}");
    }

    #[test]
    fn error_keys_keep_the_input_directory() {
        assert_eq!(
            errors_key("errors/", "raw/2024/05/14/p.json.snappy"),
            "errors/raw/2024/05/14/p.errors.jsonl"
        );
        assert_eq!(
            errors_key("errors/", "p.json.snappy"),
            "errors/p.errors.jsonl"
        );
        assert_eq!(
            rejected_input_key("errors/", "raw/p.json.snappy"),
            "errors/raw/p.json.snappy"
        );
    }
}
