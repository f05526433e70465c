"""counter-aggregator end to end: stream records from the real instance table (caused by
counter-file uploads) and crafted stream batches invoked directly; totals read back from the
aggregate table, failures from the on-failure queue. (The seed's numbers and the scale run are
in test_counter_mapper.py.)"""

import json

import pytest
from conftest import drain_queue, invoke, wait_until
from test_counter_mapper import aggregates, unique_date, upload, wait_total

I64_MAX = 2**63 - 1


def stream_record(name, seq, counter, date, values=None):
    dynamodb = {
        "Keys": {"Counter": {"S": counter}, "Date": {"S": date}},
        "SequenceNumber": seq,
        "SizeBytes": 200,
        "StreamViewType": "NEW_IMAGE",
        "ApproximateCreationDateTime": 1767225600.0,
    }
    if values is not None:
        dynamodb["NewImage"] = {
            "Counter": {"S": counter},
            "Date": {"S": date},
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
