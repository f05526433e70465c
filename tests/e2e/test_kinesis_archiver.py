"""kinesis-archiver end to end, invoked directly with crafted Kinesis batches: records
split into one object per UTC hour, bytes kept exactly (non-UTF-8 included, one `\\n`
added only where missing), large batches compressed in parallel and still read by stock
`bzip2 -d`; the same batch delivered twice leaves one object per hour; the same records
delivered again in parts (bisected, resized) leave each record in exactly one object; an
unreadable batch fails and writes nothing."""

import base64
import json
import random
import subprocess

import pytest

from conftest import invoke, marker

SHARD = "shardId-000000000917"  # not a shard of the real stream: these keys are this test's own


def archive_prefix(pipeline) -> str:
    """The archive key prefix, from the ``s3://bucket/prefix`` output."""
    return pipeline["ArchiveLocation"].removeprefix(f"s3://{pipeline['ArchiveBucketName']}/")


def bunzip2(data: bytes) -> bytes:
    return subprocess.run(["bzip2", "-dc"], input=data, capture_output=True, check=True).stdout


def kinesis_event(stream_arn: str, records: list[tuple[str, bytes, float]]) -> dict:
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": f"player-{i:06}",
                    "sequenceNumber": seq,
                    "data": base64.b64encode(data).decode(),
                    "approximateArrivalTimestamp": arrival,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{SHARD}:{seq}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::000000000000:role/kinesis-archiver",
                "awsRegion": "us-east-1",
                "eventSourceARN": stream_arn,
            }
            for i, (seq, data, arrival) in enumerate(records)
        ]
    }


def objects_for(aws, bucket: str, prefix: str, run_seq: str) -> dict[str, dict]:
    s3 = aws("s3")
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if f"{SHARD}-{run_seq}" in item["Key"]:
                got = s3.get_object(Bucket=bucket, Key=item["Key"])
                found[item["Key"]] = {"raw": got["Body"].read(), "metadata": got["Metadata"]}
    return found


@pytest.mark.timeout(240)
def test_same_batch_twice_leaves_one_exact_object_per_hour(pipeline, aws):
    tag = marker()
    # Sequence numbers unique to this run, ascending; 2021-06-30 23:xx and 2021-07-01 00:xx UTC.
    run_seq = str(random.randrange(10**20, 10**21))
    seq = lambda i: f"{run_seq}{i:06}"  # noqa: E731
    before, after = 1625097599.999, 1625097600.0  # 23:59:59.999 and 00:00:00.000
    big_line = lambda i: json.dumps(  # noqa: E731
        {"run": tag, "i": i, "player_id": f"player-{i:06}", "pad": "x" * 900 + str(random.random())}
    ).encode()
    records = [
        (seq(0), json.dumps({"run": tag, "i": 0}).encode(), before - 3000),
        (seq(1), b"\xff\xfe\x00 not utf-8 " + tag.encode(), before),
        (seq(2), json.dumps({"run": tag, "i": 2}).encode() + b"\n", after),
    ]
    # ~1.8 MB in the second hour: more than two bzip2 blocks, so compressed in parallel.
    records += [(seq(3 + i), big_line(i), after + 1 + i / 1000) for i in range(1900)]
    event = kinesis_event(pipeline["EventStreamArn"], records)

    name = pipeline["KinesisArchiverFunctionName"]
    bucket, prefix = pipeline["ArchiveBucketName"], archive_prefix(pipeline)
    first = None
    for delivery in range(2):
        response, payload = invoke(name, event)
        assert "FunctionError" not in response, payload
        assert payload == {"batchItemFailures": []}
        objects = objects_for(aws, bucket, prefix, run_seq)
        if first is None:
            first = objects
        else:
            assert objects.keys() == first.keys(), "redelivery overwrote, added nothing"

    keys = sorted(objects)
    assert keys == [
        f"{prefix}2021/06/player_events.2021063023.{SHARD}-{seq(0)}.bz2",
        f"{prefix}2021/07/player_events.2021070100.{SHARD}-{seq(2)}.bz2",
    ]
    june, july = (objects[k] for k in keys)
    assert bunzip2(june["raw"]) == records[0][1] + b"\n" + records[1][1] + b"\n"
    expected_july = b"".join(data if data.endswith(b"\n") else data + b"\n" for _, data, _ in records[2:])
    assert bunzip2(july["raw"]) == expected_july
    assert july["raw"].count(b"BZh9") >= 2, "multi-stream: compressed on several threads"
    assert june["metadata"] == {
        "record-count": "2",
        "first-sequence-number": seq(0),
        "last-sequence-number": seq(1),
        "shard-id": SHARD,
    }
    assert july["metadata"]["record-count"] == "1901"


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "parts",
    [[(0, 25), (25, 50), (50, 100)], [(0, 60), (60, 100)], [(0, 70), (70, 71), (71, 100)]],
    ids=["bisected twice", "resized", "split at the step back"],
)
def test_a_re_split_batch_leaves_every_record_in_one_object(pipeline, aws, parts):
    tag = marker()
    run_seq = str(random.randrange(10**20, 10**21))
    seq = lambda i: f"{run_seq}{i:06}"  # noqa: E731
    hour_22, hour_23 = 1625090400.0, 1625094000.0  # 2021-06-30 22:00 and 23:00 UTC
    records = [
        (seq(i), json.dumps({"run": tag, "i": i}).encode(), (hour_22 if i < 40 else hour_23) + i)
        for i in range(100)
    ]
    # An arrival time stepping back across the hour: its own group, never joined to the first.
    records[70] = (seq(70), records[70][1], hour_22 + 3599.5)
    stream_arn = pipeline["EventStreamArn"]
    name = pipeline["KinesisArchiverFunctionName"]
    bucket, prefix = pipeline["ArchiveBucketName"], archive_prefix(pipeline)

    # The whole batch written, then (as after a crash or a timeout before the answer) the
    # mapping delivers it again in parts, in order.
    for part in [records] + [records[a:b] for a, b in parts]:
        response, payload = invoke(name, kinesis_event(stream_arn, part))
        assert "FunctionError" not in response, payload
        assert payload == {"batchItemFailures": []}

    objects = objects_for(aws, bucket, prefix, run_seq)
    copies: dict[bytes, int] = {}
    for obj in objects.values():
        for line in bunzip2(obj["raw"]).splitlines():
            copies[line] = copies.get(line, 0) + 1
    assert sorted(copies) == sorted(data for _, data, _ in records), "every record archived"
    assert [line for line, n in copies.items() if n > 1] == [], "no record in two objects"
    stepped_back = [k for k in objects if k.endswith(f"-{seq(70)}.bz2")]
    assert len(stepped_back) == 1 and ".2021063022." in stepped_back[0], sorted(objects)


def test_unreadable_batch_fails_the_invocation_and_writes_nothing(pipeline, aws):
    run_seq = str(random.randrange(10**20, 10**21))
    event = kinesis_event(pipeline["EventStreamArn"], [(f"{run_seq}000001", b'{"ok":1}', 1625097600.0)])
    event["Records"][0]["eventID"] = "not-a-shard-id"
    response, payload = invoke(pipeline["KinesisArchiverFunctionName"], event)
    assert response.get("FunctionError") == "Unhandled", payload
    assert payload["errorType"] == "Permanent.InvalidEvent"
    assert f"{run_seq}000001" in payload["errorMessage"]
    objects = objects_for(aws, pipeline["ArchiveBucketName"], archive_prefix(pipeline), run_seq)
    assert objects == {}
