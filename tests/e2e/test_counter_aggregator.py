"""counter-aggregator end to end: stream records from the real instance table (caused by
counter-file uploads) and crafted stream batches invoked directly; totals read back from the
aggregate table, failures from the on-failure queue. (The seed's numbers and the scale run are
in test_counter_mapper.py.)"""

import json

import pytest
from conftest import client, drain_queue, invoke, wait_until
from test_counter_mapper import aggregates, unique_date, upload, wait_total

I64_MAX = 2**63 - 1


def stream_record(name, seq, counter, date, values=None, shard=0):
    """A crafted instance-table stream record: the image of (counter, date)'s shard item
    `shard`, whose Version is the sequence number."""
    key = f"{date}#{shard:02}"
    dynamodb = {
        "Keys": {"Counter": {"S": counter}, "Date": {"S": key}},
        "SequenceNumber": seq,
        "SizeBytes": 200,
        "StreamViewType": "NEW_IMAGE",
        "ApproximateCreationDateTime": 1767225600.0,
    }
    if values is not None:
        dynamodb["NewImage"] = {
            "Counter": {"S": counter},
            "Date": {"S": key},
            "Version": {"N": seq},
            "Instances": {
                "M": {
                    i: {"M": {"Value": {"N": str(v)}, "Seq": {"S": "0055AED6DCD90281E5" + "0" * 14}}}
                    for i, v in values.items()
                }
            },
        }
    return {
        "eventID": f"e-{seq}",
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/crafted/stream/2026-01-01T00:00:00.000",
        "dynamodb": dynamodb,
    }


@pytest.mark.timeout(300)
def test_the_same_batch_twice_writes_once(pipeline):
    date = unique_date()
    batch = {
        "Records": [
            stream_record("INSERT", "100", "CRAFTED", date, {"i-1": 40}),
            stream_record("MODIFY", "101", "CRAFTED", date, {"i-1": 40, "i-2": 2}),
        ]
    }
    function = pipeline["CounterAggregatorFunctionName"]
    response, body = invoke(function, batch)
    assert "FunctionError" not in response, body
    assert body == {"batchItemFailures": []}
    first = aggregates(pipeline, date)["CRAFTED"]
    assert (first["Value"], first["Version"]) == (42, 1), "coalesced: one write of the newest image"

    response, body = invoke(function, batch)
    assert body == {"batchItemFailures": []}
    assert aggregates(pipeline, date)["CRAFTED"] == first, "redelivery wrote again"


@pytest.mark.timeout(300)
def test_the_shards_of_a_day_sum_into_one_total_and_an_older_image_changes_nothing(pipeline):
    date = unique_date()
    function = pipeline["CounterAggregatorFunctionName"]
    response, body = invoke(function, {"Records": [
        stream_record("INSERT", "300", "SHARDED", date, {"i-a": 10, "i-b": 5}, shard=3),
        stream_record("INSERT", "301", "SHARDED", date, {"i-c": 100}, shard=17),
        stream_record("INSERT", "302", "SHARDED", date, {"i-d": -1}, shard=31),
    ]})
    assert "FunctionError" not in response, body
    assert body == {"batchItemFailures": []}
    assert aggregates(pipeline, date)["SHARDED"]["Value"] == 114

    # A newer image of shard 17, then an older one of shard 3 (a replay): only the
    # newer counts.
    response, body = invoke(function, {"Records": [
        stream_record("MODIFY", "400", "SHARDED", date, {"i-c": 100, "i-e": 20}, shard=17),
        stream_record("MODIFY", "250", "SHARDED", date, {"i-a": 999}, shard=3),
    ]})
    assert body == {"batchItemFailures": []}
    item = client("dynamodb").get_item(
        TableName=pipeline["AggregateTableName"],
        Key={"Counter": {"S": "SHARDED"}, "Date": {"S": date}},
        ConsistentRead=True,
    )["Item"]
    assert int(item["Value"]["N"]) == 134
    shards = {s: (int(e["M"]["Total"]["N"]), int(e["M"]["SourceVersion"]["N"]))
              for s, e in item["Shards"]["M"].items()}
    assert shards == {"03": (15, 300), "17": (120, 400), "31": (-1, 302)}
    assert int(item["Version"]["N"]) == 2, "one write per counter and batch: the creation, one change"


@pytest.mark.timeout(300)
def test_a_record_without_a_new_image_is_reported_as_the_checkpoint(pipeline):
    date = unique_date()
    batch = {
        "Records": [
            stream_record("INSERT", "200", "FINE", date, {"i-1": 1}),
            stream_record("MODIFY", "201", "BROKEN", date, None),
        ]
    }
    response, body = invoke(pipeline["CounterAggregatorFunctionName"], batch)
    assert "FunctionError" not in response, body
    assert body == {"batchItemFailures": [{"itemIdentifier": "201"}]}
    assert set(aggregates(pipeline, date)) == {"FINE"}


@pytest.mark.timeout(900)
def test_an_overflowing_total_is_never_written_and_ends_in_the_failure_queue(pipeline):
    queue = pipeline["CounterAggregatorFailureQueueUrl"]
    drain_queue(queue, wait_seconds=1)
    date = unique_date()
    upload(pipeline, date, "i-big", f"BIG {I64_MAX}\n")
    wait_total(pipeline, date, "BIG", I64_MAX)

    upload(pipeline, date, "i-one", "BIG 1\nSMALL 7\n")
    # The other counter of the same upload still gets its total.
    wait_total(pipeline, date, "SMALL", 7, timeout=300)

    def failure_reported():
        return [b for b in drain_queue(queue, wait_seconds=1) if "DDBStreamBatchInfo" in b or "dynamodb" in b.lower()]

    reports = wait_until(failure_reported, timeout=420, interval=3, message="on-failure destination message")
    info = json.loads(reports[0])
    assert "DDBStreamBatchInfo" in info, info
    # Never wrapped, never half-written.
    assert aggregates(pipeline, date)["BIG"]["Value"] == I64_MAX

    # The shard moved on: later changes are aggregated.
    upload(pipeline, date, "i-later", "AFTER 3\n")
    wait_total(pipeline, date, "AFTER", 3, timeout=120)
