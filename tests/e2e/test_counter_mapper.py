"""counter-mapper and counter-aggregator end to end: counter files uploaded to the bucket
(S3 -> SNS -> counter-mapper -> instance table -> stream -> counter-aggregator -> aggregate
table), read back with boto3. The seed's own numbers, change-only writes, the lost-update
guard, bad input and a scale run (40 x 100 files x counters; 100 x 100 with SLUICE_SCALE=full).

LocalStack gives every S3 event the same sequencer (0055AED6DCD90281E5); the mapper's
ordering condition lets an equal stamp through (on S3 an equal sequencer is the same event),
so sequential uploads behave as on AWS, and the lost-update case is driven with crafted
events whose sequencers are below / above the stored one.
"""

import datetime
import hashlib
import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import client, invoke, wait_until

LOCALSTACK_SEQUENCER = "0055AED6DCD90281E5"
SEED = {"i-deadbeef": 123456, "i-beefdead": 12345, "i-foobazzled": 54321, "i-flub": 1000}


def unique_date() -> str:
    """A date no other run uses, so runs against one stack do not see each other's counters."""
    day = datetime.date(2001, 1, 1) + datetime.timedelta(days=random.randrange(0, 365 * 60))
    return day.isoformat()


SHARDS = 32  # sluice_counters::SHARDS


def shard_of(instance: str) -> int:
    """The instance-table shard an instance's entries live in (sluice_counters::shard_of)."""
    return int.from_bytes(hashlib.sha256(instance.encode()).digest()[:8], "big") % SHARDS


def instance_items(outputs, counter, date) -> list[dict]:
    """Every shard item of (counter, date) in the instance table, read consistently."""
    ddb = client("dynamodb")
    items, kwargs = [], {}
    while True:
        page = ddb.query(
            TableName=outputs["InstanceTableName"],
            KeyConditionExpression="#c = :c AND begins_with(#d, :day)",
            ExpressionAttributeNames={"#c": "Counter", "#d": "Date"},
            ExpressionAttributeValues={":c": {"S": counter}, ":day": {"S": f"{date}#"}},
            ConsistentRead=True,
            **kwargs,
        )
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def counter_key(outputs, date, instance):
    return f"{outputs['CounterPrefix']}{date}/values_{instance}"


def upload(outputs, date, instance, text):
    """Puts one instance's counter file; returns the new object's version id."""
    response = client("s3").put_object(
        Bucket=outputs["CountersBucketName"], Key=counter_key(outputs, date, instance), Body=text.encode()
    )
    return response.get("VersionId")


def aggregates(outputs, date) -> dict[str, dict]:
    """Every aggregate of `date`, through the ByDate index: counter -> item (plain values)."""
    ddb = client("dynamodb")
    items, kwargs = {}, {}
    while True:
        page = ddb.query(
            TableName=outputs["AggregateTableName"],
            IndexName="ByDate",
            KeyConditionExpression="#d = :d",
            ExpressionAttributeNames={"#d": "Date"},
            ExpressionAttributeValues={":d": {"S": date}},
            **kwargs,
        )
        for item in page["Items"]:
            items[item["Counter"]["S"]] = {
                "Value": int(item["Value"]["N"]),
                "Version": int(item["Version"]["N"]),
                "UpdatedAt": item["UpdatedAt"]["S"],
            }
        if "LastEvaluatedKey" not in page:
            return items
        kwargs = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def instance_entries(outputs, counter, date) -> dict[str, dict]:
    """instance -> {Value, Seq} of (counter, date), over every shard item."""
    return {
        instance: {"Value": int(entry["M"]["Value"]["N"]), "Seq": entry["M"]["Seq"]["S"]}
        for item in instance_items(outputs, counter, date)
        for instance, entry in item.get("Instances", {}).get("M", {}).items()
    }


def wait_total(outputs, date, counter, expected, timeout=240):
    def reached():
        item = aggregates(outputs, date).get(counter)
        return item if item and item["Value"] == expected else None

    return wait_until(reached, timeout=timeout, message=f"{counter} on {date} totals {expected}")


def wait_entry(outputs, counter, date, instance, value, timeout=60):
    return wait_until(
        lambda: instance_entries(outputs, counter, date).get(instance, {}).get("Value") == value,
        timeout=timeout,
        message=f"{instance} recorded {counter}={value}",
    )


def wait_totals(outputs, date, expected: dict[str, int], recorded, timeout: float, quiet: float = 45) -> dict[str, int]:
    """Waits until the totals of `date` (counter -> Value) equal `expected`, or every
    counter has one, `recorded()` is true (every value is in the instance table) and
    the totals have not changed for `quiet` s: settled, possibly wrong by a stale
    LocalStack stream image, which the caller checks (`stale_stream_images`). Returns
    the totals."""
    last = {"at": time.monotonic(), "got": None}

    def settled():
        got = {c: item["Value"] for c, item in aggregates(outputs, date).items()}
        if got == expected:
            return got
        if got != last["got"]:
            last.update(at=time.monotonic(), got=got)
        if time.monotonic() - last["at"] < quiet or set(got) != set(expected):
            return None
        return got if recorded() else None

    return wait_until(settled, timeout=timeout, interval=2, message=f"totals of {date}")


def entries_by_counter(outputs, date, counters) -> dict[str, dict[str, tuple[int, str]]]:
    """counter -> instance -> (Value, Seq), read consistently from the instance table."""

    def one(counter):
        return counter, {
            instance: (entry["Value"], entry["Seq"])
            for instance, entry in instance_entries(outputs, counter, date).items()
        }

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, counters))


def newest_stream_images(outputs, date) -> dict[str, dict[str, int]]:
    """counter -> {instance: Value} over the highest-sequence stream record of each of
    `date`'s instance (shard) items, read from the instance table's stream (every
    stream shard)."""
    table = client("dynamodb").describe_table(TableName=outputs["InstanceTableName"])["Table"]
    streams = client("dynamodbstreams")
    arn = table["LatestStreamArn"]
    newest: dict[tuple[str, str], tuple[int, dict[str, int]]] = {}
    shards, kwargs = [], {}
    while True:
        description = streams.describe_stream(StreamArn=arn, **kwargs)["StreamDescription"]
        shards += description["Shards"]
        if not description.get("LastEvaluatedShardId"):
            break
        kwargs = {"ExclusiveStartShardId": description["LastEvaluatedShardId"]}
    for shard in shards:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                image = record["dynamodb"].get("NewImage")
                if not image or not image["Date"]["S"].startswith(f"{date}#"):
                    continue
                sequence = int(record["dynamodb"]["SequenceNumber"])
                item = (image["Counter"]["S"], image["Date"]["S"])
                if item not in newest or sequence > newest[item][0]:
                    values = {i: int(e["M"]["Value"]["N"]) for i, e in image.get("Instances", {}).get("M", {}).items()}
                    newest[item] = (sequence, values)
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    merged: dict[str, dict[str, int]] = {}
    for (counter, _), (_, values) in newest.items():
        merged.setdefault(counter, {}).update(values)
    return merged


def stale_stream_images(outputs, date, wrong_totals, got, entries) -> dict[str, dict[str, int]]:
    """Of the wrong totals, those equal to the sum of their item's newest stream image
    while that image differs from the item: counter -> the image's values."""
    if not wrong_totals:
        return {}
    images = newest_stream_images(outputs, date)
    return {c: images[c] for c in wrong_totals
            if c in images and sum(images[c].values()) == got.get(c)
            and images[c] != {i: v for i, (v, _) in entries[c].items()}}


def counter_s3_event(outputs, date, instance, version_id, sequencer, bucket=None) -> dict:
    """S3's notification of an ObjectCreated:Put of that counter file version (into the
    stack's counters bucket unless ``bucket`` is given)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-01-01T00:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket or outputs["CountersBucketName"]},
                    "object": {
                        "key": counter_key(outputs, date, instance),
                        "size": 20,
                        "versionId": version_id,
                        "sequencer": sequencer,
                    },
                },
            }
        ]
    }


def sns_event(outputs, date, instance, version_id, sequencer):
    """What SNS delivers for an S3 ObjectCreated:Put of that object version."""
    s3_event = counter_s3_event(outputs, date, instance, version_id, sequencer)
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": f"crafted-{sequencer}",
                    "TopicArn": outputs["CounterUploadsTopicArn"],
                    "Subject": "Amazon S3 Notification",
                    "Message": json.dumps(s3_event),
                    "Timestamp": "2026-01-01T00:00:00.000Z",
                },
            }
        ]
    }


@pytest.mark.timeout(600)
def test_seed_numbers_aggregate_and_unchanged_uploads_write_nothing(pipeline):
    date = unique_date()
    for instance, value in SEED.items():
        upload(pipeline, date, instance, f"COUNTER1 {value}\n")
    total = wait_total(pipeline, date, "COUNTER1", 191122)
    assert sum(SEED.values()) == 191122
    entries = wait_until(lambda: len(instance_entries(pipeline, "COUNTER1", date)) == 4 and instance_entries(pipeline, "COUNTER1", date))
    assert {i: e["Value"] for i, e in entries.items()} == SEED

    # Redelivery / re-upload of an unchanged file: the mapper runs, writes nothing.
    mapper = pipeline["CounterMapperFunctionName"]
    response, summary = invoke(
        mapper, sns_event(pipeline, date, "i-flub", None, LOCALSTACK_SEQUENCER)
    )
    assert "FunctionError" not in response, summary
    assert summary["counters"] == 1 and summary["written"] == 0 and summary["not_newer"] == 1, summary
    upload(pipeline, date, "i-flub", "COUNTER1 1000\n")
    response, summary = invoke(mapper, sns_event(pipeline, date, "i-flub", None, LOCALSTACK_SEQUENCER))
    assert summary["written"] == 0, summary
    assert instance_entries(pipeline, "COUNTER1", date) == entries
    after = aggregates(pipeline, date)["COUNTER1"]
    assert after == total, "an unchanged upload caused an aggregate write"

    # A newer value changes the total accordingly.
    upload(pipeline, date, "i-flub", "COUNTER1 2000\n")
    newer = wait_total(pipeline, date, "COUNTER1", 192122)
    assert newer["Version"] == total["Version"] + 1


@pytest.mark.timeout(600)
def test_an_older_upload_delivered_late_does_not_overwrite_the_newer_value(pipeline):
    date = unique_date()
    mapper = pipeline["CounterMapperFunctionName"]
    upload(pipeline, date, "i-deadbeef", "COUNTER1 5\n")
    old_version = upload(pipeline, date, "i-beefdead", "COUNTER1 100\n")
    wait_total(pipeline, date, "COUNTER1", 105)
    upload(pipeline, date, "i-beefdead", "COUNTER1 200\n")
    wait_total(pipeline, date, "COUNTER1", 205)
    stored = instance_entries(pipeline, "COUNTER1", date)["i-beefdead"]
    assert stored["Seq"].startswith(LOCALSTACK_SEQUENCER)

    # The first upload's event, delivered again after the newer one (its sequencer is lower).
    older = sns_event(pipeline, date, "i-beefdead", old_version, "0055AED6DCD90281E4")
    response, summary = invoke(mapper, older)
    assert "FunctionError" not in response, summary
    assert summary["written"] == 0 and summary["not_newer"] == 1, summary
    assert instance_entries(pipeline, "COUNTER1", date)["i-beefdead"] == stored
    assert aggregates(pipeline, date)["COUNTER1"]["Value"] == 205

    # Control: the same old file with a *later* sequencer is written, so the stamp in the
    # condition (not something else) is what kept the older event out.
    later = sns_event(pipeline, date, "i-beefdead", old_version, "0055AED6DCD90281E6")
    response, summary = invoke(mapper, later)
    assert summary["written"] == 1, summary
    wait_total(pipeline, date, "COUNTER1", 105)


def error_records(outputs, date, instance) -> list[dict]:
    """The error objects kept for one instance's file of `date`, their records in order."""
    s3 = client("s3")
    prefix = f"{outputs['CounterErrorPrefix']}{counter_key(outputs, date, instance)}."
    listed = s3.list_objects_v2(Bucket=outputs["CountersBucketName"], Prefix=prefix).get("Contents", [])
    records = []
    for entry in sorted(listed, key=lambda e: e["Key"]):
        body = s3.get_object(Bucket=outputs["CountersBucketName"], Key=entry["Key"])["Body"].read()
        records += [json.loads(line) for line in body.decode().splitlines()]
    return records


@pytest.mark.timeout(600)
def test_malformed_lines_and_foreign_keys_are_skipped_the_rest_counts(pipeline):
    date = unique_date()
    version = upload(pipeline, date, "i-mixed", "GOOD 5\nBAD five\n\nALSO BAD 1 2\nNEG -3\n")
    wait_total(pipeline, date, "GOOD", 5)
    wait_total(pipeline, date, "NEG", -3)
    assert set(aggregates(pipeline, date)) == {"GOOD", "NEG"}

    # The lines that did not count are kept with the file, line number, line and reason.
    kept = wait_until(lambda: error_records(pipeline, date, "i-mixed"), timeout=60, message="error object")
    source = f"s3://{pipeline['CountersBucketName']}/{counter_key(pipeline, date, 'i-mixed')}"
    assert [(r["source"], r["version_id"], r["line"], r["text"], r["reason_code"]) for r in kept] == [
        (source, version, 2, "BAD five", "bad_value"),
        (source, version, 4, "ALSO BAD 1 2", "too_many_fields"),
    ]

    # Keys outside the layout are skipped (not retried), nothing recorded.
    s3 = client("s3")
    s3.put_object(
        Bucket=pipeline["CountersBucketName"],
        Key=f"{pipeline['CounterPrefix']}not-a-date/values_i-x",
        Body=b"GOOD 1000\n",
    )
    response, summary = invoke(
        pipeline["CounterMapperFunctionName"],
        {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                      "s3": {"bucket": {"name": pipeline["CountersBucketName"]},
                             "object": {"key": f"{pipeline['CounterPrefix']}not-a-date/values_i-x",
                                        "sequencer": LOCALSTACK_SEQUENCER}}}]},
    )
    assert summary == {"files": 0, "skipped": 1, "counters": 0, "written": 0, "not_newer": 0,
                       "malformed_lines": 0, "error_records": 0}

    # An event the mapper cannot order fails the invocation with its reason (async: retried,
    # then the on-failure queue).
    response, body = invoke(
        pipeline["CounterMapperFunctionName"], sns_event(pipeline, date, "i-mixed", None, "")
    )
    assert response.get("FunctionError"), body
    assert body["errorType"] == "Permanent.UnorderedUpload", body


@pytest.mark.timeout(600)
def test_a_forged_notification_naming_another_bucket_changes_nothing(pipeline, aws):
    date = unique_date()
    upload(pipeline, date, "i-real", "COUNTER1 10\n")
    wait_total(pipeline, date, "COUNTER1", 10)
    before = instance_entries(pipeline, "COUNTER1", date)

    # another bucket, the highest possible stamp: would win every ordering check
    forged = counter_s3_event(pipeline, date, "i-real", None, "F" * 18, bucket="someone-elses-bucket")
    response, body = invoke(pipeline["CounterMapperFunctionName"], forged)

    assert response.get("FunctionError"), body
    assert body["errorType"] == "Permanent.ForeignBucket", body
    assert "someone-elses-bucket" in body["errorMessage"]
    assert instance_entries(pipeline, "COUNTER1", date) == before
    assert aggregates(pipeline, date)["COUNTER1"]["Value"] == 10
    # and only the counters bucket may publish to the uploads topic
    policy = json.loads(
        aws("sns").get_topic_attributes(TopicArn=pipeline["CounterUploadsTopicArn"])["Attributes"]["Policy"]
    )
    (statement,) = policy["Statement"]
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == f"arn:aws:s3:::{pipeline['CountersBucketName']}"


def test_a_notification_sns_cannot_deliver_is_kept_in_a_queue(pipeline, aws):
    sns = aws("sns")
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=pipeline["CounterUploadsTopicArn"])["Subscriptions"]
    (mapper,) = [s for s in subscriptions if s["Protocol"] == "lambda"]
    attributes = sns.get_subscription_attributes(SubscriptionArn=mapper["SubscriptionArn"])["Attributes"]
    queue_arn = aws("sqs").get_queue_attributes(
        QueueUrl=pipeline["CounterUploadsDeliveryQueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": queue_arn}


# CI runs 40 files x 100 counters (4,000 values, ~2 min in CI: LocalStack's DynamoDB stream
# mapping feeds the aggregator ~30 records/s); `SLUICE_SCALE=full` (or SLUICE_FAULT_SCALE=full,
# the fault tests' switch) the full 100 x 100.
SCALE_FULL = "full" in (os.environ.get("SLUICE_SCALE"), os.environ.get("SLUICE_FAULT_SCALE"))
SCALE_INSTANCES = 100 if SCALE_FULL else 40


@pytest.mark.timeout(1500 if SCALE_FULL else 900)
def test_scale_instances_by_100_counters(pipeline):
    date = unique_date()
    instances, counters = SCALE_INSTANCES, 100
    values = {
        i: {c: random.randrange(-1000, 1_000_000) for c in range(counters)} for i in range(instances)
    }
    expected = {f"C{c:03}": sum(values[i][c] for i in range(instances)) for c in range(counters)}
    s3 = client("s3", max_pool_connections=16)
    started = time.monotonic()

    def put(i):
        body = "".join(f"C{c:03} {v}\n" for c, v in values[i].items())
        s3.put_object(
            Bucket=pipeline["CountersBucketName"],
            Key=counter_key(pipeline, date, f"i-{i:08x}"),
            Body=body.encode(),
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(instances)))
    uploaded = time.monotonic() - started

    names = sorted(expected)
    want_entries = {c: {f"i-{i:08x}": values[i][int(c[1:])] for i in range(instances)} for c in names}

    def recorded():
        entries = entries_by_counter(pipeline, date, names)
        return {c: {i: v for i, (v, _) in e.items()} for c, e in entries.items()} == want_entries

    got = wait_totals(pipeline, date, expected, recorded, timeout=1400 if SCALE_FULL else 840)
    # LocalStack can give an item's newest stream record an older image (two concurrent
    # writes; see test_faults_counters.py). The aggregator rightly sums the newest record, so
    # a wrong total must be exactly that stale image's sum; anything else is the pipeline's.
    wrong = sorted(c for c in names if got.get(c) != expected[c])
    stale = stale_stream_images(pipeline, date, wrong, got, entries_by_counter(pipeline, date, wrong))
    assert sorted(stale) == wrong, {c: (got.get(c), expected[c]) for c in wrong if c not in stale}
    if stale:
        print(f"LocalStack stream: newest record of {sorted(stale)} carries an older image")
    elapsed = time.monotonic() - started
    print(f"\nscale: {instances} files x {counters} counters uploaded in {uploaded:.1f}s, "
          f"all {counters} aggregates correct after {elapsed:.1f}s")


# One item per counter and day held every instance and hit DynamoDB's 400 KB at ~1,300
# instances with long ids (the ValidationException was then misread as "no map yet").
# CI: 2,000 instances with 200-byte ids (~0.5 MB of entries for one counter and day, more
# than one item can hold); SLUICE_SCALE=full: 10,000.
CAPACITY_INSTANCES = 10_000 if SCALE_FULL else 2_000
ITEM_LIMIT = 400 * 1024


def entry_size(instance: str, value: int, seq: str) -> int:
    """DynamoDB's size of one `<id>: {Value, Seq}` map entry (sluice_counters::entry_size)."""
    digits = str(abs(value)).strip("0") or "0"
    return 1 + len(instance) + 3 + (1 + 5 + (len(digits) + 1) // 2 + 1) + (1 + 3 + len(seq))


@pytest.mark.timeout(3600 if SCALE_FULL else 1200)
def test_thousands_of_instances_with_long_ids_count_for_one_counter_and_day(pipeline):
    date = unique_date()
    ids = [f"i-{n:05d}-" + "x" * 192 for n in range(CAPACITY_INSTANCES)]
    values = {i: random.randrange(-1000, 1_000_000) for i in ids}
    expected = sum(values.values())
    s3 = client("s3", max_pool_connections=16)
    started = time.monotonic()

    def put(instance):
        s3.put_object(
            Bucket=pipeline["CountersBucketName"],
            Key=counter_key(pipeline, date, instance),
            Body=f"CAPACITY {values[instance]}\nOTHER 1\n".encode(),
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, ids))
    uploaded = time.monotonic() - started
    wait_total(pipeline, date, "CAPACITY", expected, timeout=3000 if SCALE_FULL else 1000)
    wait_total(pipeline, date, "OTHER", CAPACITY_INSTANCES, timeout=120)
    elapsed = time.monotonic() - started

    items = instance_items(pipeline, "CAPACITY", date)
    entries = {
        i: (int(e["M"]["Value"]["N"]), e["M"]["Seq"]["S"])
        for item in items
        for i, e in item["Instances"]["M"].items()
    }
    assert {i: v for i, (v, _) in entries.items()} == values
    # Every entry is in the shard item the shared contract names.
    for item in items:
        shard = int(item["Date"]["S"].rsplit("#", 1)[1])
        assert all(shard_of(i) == shard for i in item["Instances"]["M"]), item["Date"]["S"]
    sizes = [sum(entry_size(i, int(e["M"]["Value"]["N"]), e["M"]["Seq"]["S"])
                 for i, e in item["Instances"]["M"].items()) for item in items]
    in_one_item = sum(entry_size(i, v, s) for i, (v, s) in entries.items())
    assert in_one_item > ITEM_LIMIT, f"the workload must not fit one item ({in_one_item} bytes)"
    assert len(items) <= SHARDS and max(sizes) < ITEM_LIMIT / 3, sizes
    print(f"\ncapacity: {CAPACITY_INSTANCES} instances ({in_one_item / 1024:.0f} KiB of entries, "
          f"{in_one_item / ITEM_LIMIT:.1f}x one item's limit) in {len(items)} shard items, fullest "
          f"{max(sizes) / 1024:.0f} KiB; uploaded in {uploaded:.0f}s, totals right after {elapsed:.0f}s")
