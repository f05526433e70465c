//! A DynamoDB stream range read back, in the shape Lambda hands it to a function: what a
//! stream mapping's on-failure record describes (shard, first and last sequence number)
//! becomes the batch the function failed on, to be replayed into it.

use std::cmp::Ordering;

use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use serde_json::{Map, Value, json};
use sluice_events::compare_sequence_numbers;

use crate::error::{CliError, sdk, service_code};
use crate::parked::BatchInfo;

/// What reading a range found.
#[derive(Debug, Clone, PartialEq)]
pub enum Range {
    /// The range's records, in order, as Lambda event records.
    Records(Vec<Value>),
    /// The range is no longer on the stream (past its 24 h retention, or the stream is
    /// gone): nothing to replay from.
    Gone(String),
}

/// Pages read at most while looking for the end of a range (a range is one batch).
const MAX_PAGES: usize = 1000;
/// Empty pages in a row after which an open shard has nothing more.
const MAX_EMPTY_PAGES: usize = 3;

pub async fn read_range(streams: &Client, info: &BatchInfo) -> Result<Range, CliError> {
    let iterator = streams
        .get_shard_iterator()
        .stream_arn(&info.stream_arn)
        .shard_id(&info.shard_id)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .sequence_number(&info.start_sequence_number)
        .send()
        .await;
    let mut iterator = match iterator {
        Ok(answer) => answer.shard_iterator().map(str::to_owned),
        Err(err) => {
            let code = service_code(&err).unwrap_or_default();
            if code == "TrimmedDataAccessException" || code == "ResourceNotFoundException" {
                return Ok(Range::Gone(format!(
                    "{code}: shard {} from {} is no longer on the stream (24 h retention)",
                    info.shard_id, info.start_sequence_number
                )));
            }
            return Err(sdk(
                format!("reading stream {} shard {}", info.stream_arn, info.shard_id),
                err,
            ));
        }
    };
    let mut records = Vec::new();
    let mut empty = 0;
    for _ in 0..MAX_PAGES {
        let Some(current) = iterator.take() else {
            break;
        };
        let page = streams
            .get_records()
            .shard_iterator(current)
            .limit(1000)
            .send()
            .await;
        let page = match page {
            Ok(page) => page,
            Err(err) => {
                let code = service_code(&err).unwrap_or_default();
                if code == "TrimmedDataAccessException" {
                    return Ok(Range::Gone(format!(
                        "{code} while reading shard {}",
                        info.shard_id
                    )));
                }
                return Err(sdk(format!("reading shard {}", info.shard_id), err));
            }
        };
        if page.records().is_empty() {
            empty += 1;
            if empty >= MAX_EMPTY_PAGES {
                break;
            }
        } else {
            empty = 0;
        }
        for record in page.records() {
            let seq = record
                .dynamodb()
                .and_then(|d| d.sequence_number())
                .unwrap_or_default();
            if records.is_empty()
                && compare_sequence_numbers(seq, &info.start_sequence_number) == Ordering::Greater
            {
                return Ok(Range::Gone(format!(
                    "shard {} starts at {seq} now, after the range's first record {}: trimmed",
                    info.shard_id, info.start_sequence_number
                )));
            }
            if compare_sequence_numbers(seq, &info.end_sequence_number) == Ordering::Greater {
                return Ok(Range::Records(records));
            }
            records.push(lambda_record(record, &info.stream_arn));
        }
        iterator = page.next_shard_iterator().map(str::to_owned);
    }
    if records.is_empty() {
        return Ok(Range::Gone(format!(
            "no record of shard {} from {} on the stream",
            info.shard_id, info.start_sequence_number
        )));
    }
    Ok(Range::Records(records))
}

/// One stream record as a DynamoDB stream mapping delivers it to Lambda.
pub fn lambda_record(record: &Record, stream_arn: &str) -> Value {
    let mut change = Map::new();
    if let Some(d) = record.dynamodb() {
        if let Some(at) = d.approximate_creation_date_time() {
            change.insert(
                "ApproximateCreationDateTime".into(),
                json!(at.secs() as f64 + f64::from(at.subsec_nanos()) / 1e9),
            );
        }
        if let Some(keys) = d.keys() {
            change.insert("Keys".into(), item(keys));
        }
        if let Some(image) = d.new_image() {
            change.insert("NewImage".into(), item(image));
        }
        if let Some(image) = d.old_image() {
            change.insert("OldImage".into(), item(image));
        }
        if let Some(seq) = d.sequence_number() {
            change.insert("SequenceNumber".into(), json!(seq));
        }
        if let Some(size) = d.size_bytes() {
            change.insert("SizeBytes".into(), json!(size));
        }
        if let Some(view) = d.stream_view_type() {
            change.insert("StreamViewType".into(), json!(view.as_str()));
        }
    }
    let mut out = Map::new();
    out.insert(
        "eventID".into(),
        json!(record.event_id().unwrap_or_default()),
    );
    out.insert(
        "eventName".into(),
        json!(record.event_name().map(|n| n.as_str()).unwrap_or_default()),
    );
    out.insert(
        "eventVersion".into(),
        json!(record.event_version().unwrap_or("1.1")),
    );
    out.insert(
        "eventSource".into(),
        json!(record.event_source().unwrap_or("aws:dynamodb")),
    );
    out.insert(
        "awsRegion".into(),
        json!(record.aws_region().unwrap_or_default()),
    );
    out.insert("dynamodb".into(), Value::Object(change));
    out.insert("eventSourceARN".into(), json!(stream_arn));
    Value::Object(out)
}

fn item(attributes: &std::collections::HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        attributes
            .iter()
            .map(|(k, v)| (k.clone(), attribute(v)))
            .collect(),
    )
}

/// An attribute in DynamoDB's JSON (`{"S": "…"}`, `{"N": "…"}`, `{"M": {…}}`, …).
pub fn attribute(value: &AttributeValue) -> Value {
    let b64 = |b: &aws_smithy_types::Blob| aws_smithy_types::base64::encode(b.as_ref());
    match value {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::B(b) => json!({"B": b64(b)}),
        AttributeValue::Ss(v) => json!({"SS": v}),
        AttributeValue::Ns(v) => json!({"NS": v}),
        AttributeValue::Bs(v) => json!({"BS": v.iter().map(b64).collect::<Vec<_>>()}),
        AttributeValue::M(m) => json!({"M": item(m)}),
        AttributeValue::L(l) => json!({"L": l.iter().map(attribute).collect::<Vec<_>>()}),
        AttributeValue::Null(n) => json!({"NULL": n}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        _ => json!({"NULL": true}),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aws_sdk_dynamodbstreams::operation::get_records::GetRecordsOutput;
    use aws_sdk_dynamodbstreams::operation::get_shard_iterator::GetShardIteratorOutput;
    use aws_sdk_dynamodbstreams::types::{OperationType, StreamRecord, StreamViewType};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use sluice_events::aws_lambda_events::dynamodb::Event as DynamoEvent;

    pub(crate) fn stream_record(seq: &str, counter: &str, value: i64) -> Record {
        Record::builder()
            .event_id(format!("id-{seq}"))
            .event_name(OperationType::Modify)
            .event_version("1.1")
            .event_source("aws:dynamodb")
            .aws_region("us-east-1")
            .dynamodb(
                StreamRecord::builder()
                    .approximate_creation_date_time(aws_smithy_types::DateTime::from_secs(
                        1_790_000_000,
                    ))
                    .keys("Counter", AttributeValue::S(counter.into()))
                    .keys("Date", AttributeValue::S("2026-11-22#07".into()))
                    .new_image("Counter", AttributeValue::S(counter.into()))
                    .new_image("Date", AttributeValue::S("2026-11-22#07".into()))
                    .new_image("Version", AttributeValue::N("3".into()))
                    .new_image(
                        "Instances",
                        AttributeValue::M(
                            [(
                                "i-1".to_owned(),
                                AttributeValue::M(
                                    [
                                        ("Value".to_owned(), AttributeValue::N(value.to_string())),
                                        ("Seq".to_owned(), AttributeValue::S("00AB".into())),
                                    ]
                                    .into(),
                                ),
                            )]
                            .into(),
                        ),
                    )
                    .sequence_number(seq)
                    .size_bytes(120)
                    .stream_view_type(StreamViewType::NewImage)
                    .build(),
            )
            .build()
    }

    fn info(start: &str, end: &str) -> BatchInfo {
        BatchInfo {
            shard_id: "shardId-1".into(),
            start_sequence_number: start.into(),
            end_sequence_number: end.into(),
            batch_size: Some(2),
            stream_arn: "arn:aws:dynamodb:us-east-1:000000000000:table/i/stream/1".into(),
            approximate_arrival_of_first_record: None,
        }
    }

    #[test]
    fn a_replayed_record_reads_as_the_event_lambda_would_have_delivered() {
        let event = json!({"Records": [lambda_record(&stream_record("200", "C1", 42), "arn:s")]});
        let parsed: DynamoEvent = serde_json::from_value(event.clone()).unwrap();
        let record = &parsed.records[0];
        assert_eq!(record.change.sequence_number.as_deref(), Some("200"));
        assert_eq!(record.event_source_arn.as_deref(), Some("arn:s"));
        assert_eq!(
            event["Records"][0]["dynamodb"]["NewImage"]["Instances"]["M"]["i-1"]["M"]["Value"],
            json!({"N": "42"})
        );
        assert_eq!(
            event["Records"][0]["dynamodb"]["ApproximateCreationDateTime"],
            json!(1.79e9)
        );
    }

    #[tokio::test]
    async fn a_range_is_read_from_its_first_to_its_last_sequence_number() {
        let iterator = mock!(Client::get_shard_iterator)
            .match_requests(|r| {
                r.sequence_number() == Some("200")
                    && r.shard_iterator_type() == Some(&ShardIteratorType::AtSequenceNumber)
            })
            .then_output(|| {
                GetShardIteratorOutput::builder()
                    .shard_iterator("it-1")
                    .build()
            });
        let first = mock!(Client::get_records)
            .match_requests(|r| r.shard_iterator() == Some("it-1"))
            .then_output(|| {
                GetRecordsOutput::builder()
                    .records(stream_record("200", "C1", 1))
                    .records(stream_record("201", "C2", 2))
                    .next_shard_iterator("it-2")
                    .build()
            });
        let second = mock!(Client::get_records)
            .match_requests(|r| r.shard_iterator() == Some("it-2"))
            .then_output(|| {
                GetRecordsOutput::builder()
                    .records(stream_record("202", "C3", 3))
                    .records(stream_record("203", "C4", 4))
                    .next_shard_iterator("it-3")
                    .build()
            });
        let client = mock_client!(
            aws_sdk_dynamodbstreams,
            RuleMode::MatchAny,
            [&iterator, &first, &second]
        );
        let Range::Records(records) = read_range(&client, &info("200", "202")).await.unwrap()
        else {
            panic!("the range is on the stream");
        };
        let seqs: Vec<&str> = records
            .iter()
            .map(|r| r["dynamodb"]["SequenceNumber"].as_str().unwrap())
            .collect();
        assert_eq!(seqs, ["200", "201", "202"], "203 is past the range");
    }

    #[tokio::test]
    async fn a_range_past_the_streams_retention_is_gone_not_an_error() {
        let trimmed = mock!(Client::get_shard_iterator).then_http_response(|| {
            sluice_aws::test_support::json_error(
                400,
                "com.amazonaws.dynamodb.v20120810#TrimmedDataAccessException",
                "trimmed",
            )
        });
        let client = mock_client!(aws_sdk_dynamodbstreams, RuleMode::MatchAny, [&trimmed]);
        let range = read_range(&client, &info("200", "202")).await.unwrap();
        assert!(
            matches!(&range, Range::Gone(why) if why.contains("TrimmedDataAccessException")),
            "{range:?}"
        );

        // A shard whose oldest record is after the range's start has lost the range's start.
        let iterator = mock!(Client::get_shard_iterator).then_output(|| {
            GetShardIteratorOutput::builder()
                .shard_iterator("it")
                .build()
        });
        let later = mock!(Client::get_records).then_output(|| {
            GetRecordsOutput::builder()
                .records(stream_record("250", "C1", 1))
                .build()
        });
        let client = mock_client!(
            aws_sdk_dynamodbstreams,
            RuleMode::MatchAny,
            [&iterator, &later]
        );
        let range = read_range(&client, &info("200", "202")).await.unwrap();
        assert!(
            matches!(&range, Range::Gone(why) if why.contains("trimmed")),
            "{range:?}"
        );
    }
}
