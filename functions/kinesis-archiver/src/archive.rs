//! What the archiver writes, decided without I/O: records grouped by shard and UTC hour
//! of arrival, each group's newline-delimited payload, its bzip2 body, its object key and
//! metadata.
//!
//! A group is a contiguous run of the batch: consecutive records of one shard that arrived
//! in the same UTC hour. The key's `<id>` is `<shard id>-<first sequence number>` of the
//! group, and nothing else, so any redelivery lands on keys already written and overwrites
//! them instead of adding copies:
//!
//! - the same batch again: the same groups, the same keys, the same bytes;
//! - from a checkpoint the function reported (the first sequence number of the first group
//!   it could not write): every group before it holds only records before it, so nothing
//!   written is delivered again;
//! - re-split (a bisected or resized batch after a crash or a timeout, parts delivered in
//!   order from where the batch started): every object the earlier attempt wrote starts
//!   at a batch start or an hour change, which starts a group in the part holding it too,
//!   so that part overwrites it with only its own records; the records past the part's end
//!   are written by the next part, under its first record. No record stays in two objects.

use sluice_events::KinesisRecordData;
use sluice_partition::{HourPartition, PartitionTime};

/// A contiguous run of a batch's records that arrived in the same UTC hour on the same
/// shard, in batch (sequence) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourGroup<'a> {
    pub shard_id: &'a str,
    pub hour: HourPartition,
    pub records: Vec<&'a KinesisRecordData>,
}

impl HourGroup<'_> {
    pub fn first_sequence_number(&self) -> &str {
        &self.records[0].sequence_number
    }

    pub fn last_sequence_number(&self) -> &str {
        &self.records[self.records.len() - 1].sequence_number
    }

    /// `<prefix><yyyy>/<mm>/player_events.<yyyymmddHH>.<shard id>-<first seq>.bz2`.
    pub fn object_key(&self, prefix: &str) -> String {
        format!(
            "{prefix}{}player_events.{}.{}-{}.bz2",
            self.hour.year_month_path(),
            self.hour.stamp(),
            key_safe(self.shard_id),
            self.first_sequence_number(),
        )
    }

    /// User metadata of the object (`x-amz-meta-*`).
    pub fn metadata(&self) -> Vec<(&'static str, String)> {
        vec![
            ("record-count", self.records.len().to_string()),
            (
                "first-sequence-number",
                self.first_sequence_number().to_owned(),
            ),
            (
                "last-sequence-number",
                self.last_sequence_number().to_owned(),
            ),
            ("shard-id", self.shard_id.to_owned()),
        ]
    }

    /// Every record's data as is (binary-safe), each followed by `\n` unless it
    /// already ends with one.
    pub fn payload(&self) -> Vec<u8> {
        let len = self.records.iter().map(|r| r.data.len() + 1).sum();
        let mut out = Vec::with_capacity(len);
        for record in &self.records {
            out.extend_from_slice(&record.data);
            if record.data.last() != Some(&b'\n') {
                out.push(b'\n');
            }
        }
        out
    }
}

/// Splits `records` into contiguous runs of one shard and UTC hour of arrival, in batch
/// order: a record joins the group before it only when it has the same shard and hour,
/// so every group holds lower sequence numbers than every later group. With Kinesis'
/// increasing arrival times that is one group per hour; an arrival time that steps back
/// across an hour boundary starts a new group (and object) rather than reaching back.
pub fn hour_groups(records: &[KinesisRecordData]) -> Vec<HourGroup<'_>> {
    let mut groups: Vec<HourGroup<'_>> = Vec::new();
    for record in records {
        let hour = PartitionTime::from_datetime(record.arrival).hour();
        match groups.last_mut() {
            Some(group) if group.hour == hour && group.shard_id == record.shard_id => {
                group.records.push(record)
            }
            _ => groups.push(HourGroup {
                shard_id: &record.shard_id,
                hour,
                records: vec![record],
            }),
        }
    }
    groups
}

/// Compresses a payload as bzip2 at `level`, on `threads` threads (0: all vCPUs) when it
/// is larger than one bzip2 block; the result is a (multi-stream) file `bzip2 -d` reads.
pub fn compress(payload: &[u8], level: u32, threads: usize) -> Vec<u8> {
    sluice_codec::bzip2::compress_parallel(payload, level, threads)
}

/// Shard ids are `shardId-000000000000`; anything outside `[A-Za-z0-9_-]` (never seen
/// from Kinesis) is replaced so the key stays a plain path segment.
fn key_safe(shard_id: &str) -> String {
    shard_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn record(
        shard: &str,
        seq: &str,
        data: &[u8],
        arrival: time::OffsetDateTime,
    ) -> KinesisRecordData {
        KinesisRecordData {
            shard_id: shard.into(),
            sequence_number: seq.into(),
            partition_key: "pk".into(),
            data: data.to_vec(),
            arrival,
        }
    }

    #[test]
    fn groups_are_contiguous_runs_of_one_utc_hour_in_batch_order() {
        let records = vec![
            record(
                "shardId-000000000000",
                "101",
                b"a",
                datetime!(2024-03-09 07:59:59.999 UTC),
            ),
            record(
                "shardId-000000000000",
                "102",
                b"b",
                datetime!(2024-03-09 08:00:00.000 UTC),
            ),
            record(
                "shardId-000000000000",
                "103",
                b"c",
                datetime!(2024-03-09 07:59:00 UTC),
            ),
            record(
                "shardId-000000000000",
                "104",
                b"d",
                datetime!(2024-03-09 09:30:00 +01:00),
            ),
        ];
        let groups = hour_groups(&records);
        let summary: Vec<(String, Vec<&str>)> = groups
            .iter()
            .map(|g| {
                (
                    g.hour.stamp(),
                    g.records
                        .iter()
                        .map(|r| r.sequence_number.as_str())
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("2024030907".to_owned(), vec!["101"]),
                ("2024030908".to_owned(), vec!["102"]),
                ("2024030907".to_owned(), vec!["103"]),
                ("2024030908".to_owned(), vec!["104"]),
            ],
            "a record never joins a group it is not next to"
        );
        let keys: Vec<String> = groups.iter().map(|g| g.object_key("")).collect();
        let distinct: std::collections::BTreeSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), 4, "one key per group: {keys:?}");
    }

    #[test]
    fn different_shards_never_share_an_object() {
        let t = datetime!(2024-03-09 07:00:00 UTC);
        let records = vec![
            record("shardId-000000000000", "1", b"a", t),
            record("shardId-000000000001", "2", b"b", t),
        ];
        assert_eq!(hour_groups(&records).len(), 2);
    }

    #[test]
    fn key_holds_partition_hour_shard_and_first_sequence_number() {
        let t = datetime!(2024-03-09 07:15:00 UTC);
        let records = vec![
            record(
                "shardId-000000000003",
                "49590338271490256608559692538361571095921575989136588898",
                b"a",
                t,
            ),
            record(
                "shardId-000000000003",
                "49590338271490256608559692540925702759324208523137515618",
                b"b",
                t,
            ),
        ];
        let groups = hour_groups(&records);
        assert_eq!(
            groups[0].object_key("raw/"),
            "raw/2024/03/player_events.2024030907.shardId-000000000003-49590338271490256608559692538361571095921575989136588898.bz2"
        );
        assert_eq!(
            groups[0].metadata(),
            vec![
                ("record-count", "2".to_owned()),
                (
                    "first-sequence-number",
                    "49590338271490256608559692538361571095921575989136588898".to_owned()
                ),
                (
                    "last-sequence-number",
                    "49590338271490256608559692540925702759324208523137515618".to_owned()
                ),
                ("shard-id", "shardId-000000000003".to_owned()),
            ]
        );
    }

    #[test]
    fn the_same_records_always_get_the_same_key() {
        let t = datetime!(2024-12-31 23:59:59 UTC);
        let records = vec![record("shardId-000000000000", "7", b"x", t)];
        let again = records.clone();
        assert_eq!(
            hour_groups(&records)[0].object_key(""),
            hour_groups(&again)[0].object_key("")
        );
        assert_eq!(
            hour_groups(&records)[0].object_key(""),
            "2024/12/player_events.2024123123.shardId-000000000000-7.bz2"
        );
    }

    #[test]
    fn payload_adds_one_newline_only_where_missing_and_keeps_bytes() {
        let t = datetime!(2024-03-09 07:00:00 UTC);
        let records = vec![
            record("shardId-000000000000", "1", b"{\"a\":1}", t),
            record("shardId-000000000000", "2", b"line\n", t),
            record("shardId-000000000000", "3", b"", t),
            record("shardId-000000000000", "4", b"\xff\xfe\x00binary", t),
            record("shardId-000000000000", "5", b"two\n\n", t),
        ];
        assert_eq!(
            hour_groups(&records)[0].payload(),
            b"{\"a\":1}\nline\n\n\xff\xfe\x00binary\ntwo\n\n".to_vec()
        );
    }

    #[test]
    fn large_payloads_compress_in_parallel_and_round_trip_exactly() {
        let payload: Vec<u8> = (0..2_500_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let compressed = compress(&payload, 9, 2);
        let single = sluice_codec::bzip2::compress(&payload, 9);
        assert_ne!(compressed, single, "split into several streams");
        assert_eq!(
            sluice_codec::bzip2::decompress(&compressed).unwrap(),
            payload
        );
    }
}
