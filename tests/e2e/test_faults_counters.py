"""counter-mapper and counter-aggregator under injected faults (issue #11, part 1).

The whole pipeline is deployed once as ``faulty_pipeline``: both functions' AWS calls go
through the fault proxy (the mapper's S3 GetObject and DynamoDB UpdateItem, the
aggregator's UpdateItem). LocalStack's own wiring (S3 -> SNS -> Lambda, the DynamoDB
stream -> Lambda mapping) does not.

- ``test_aggregates_equal_the_true_sums_under_faults``: INSTANCES x COUNTERS counter files
  uploaded to the counters bucket (the real trigger) while 20% of the functions' DynamoDB
  and S3 calls are throttled, 5% answer 500, 2% lose the connection (and, where the proxy
  supports it, 2% of UpdateItem responses are lost after the write). Every value must end
  in the instance table and every aggregate must equal the sum the test computed, or the
  file must be in the mapper's on-failure queue with its reason. Nothing else.
- ``test_newest_first_and_duplicated_deliveries_leave_the_clean_state``: each instance
  uploads three versions of its file. One date gets a clean run (each version's
  notification once, oldest first, no faults); another date gets the same files with the
  notifications newest first, every one delivered twice and the newest once more at the
  end, faults on. Both dates must end in the same instance entries and aggregates.

LocalStack gives every S3 event the same sequencer (0055AED6DCD90281E5), which the mapper's
ordering stamp cannot tell apart. The reordering test therefore publishes the
notifications itself to the counter-uploads SNS topic (the mapper's real trigger) with the
increasing sequencers S3 gives successive uploads of one key (...E6, ...E7, ...E8), naming
object versions in the counters bucket (the mapper refuses any other bucket) while the
test has switched the bucket's notifications off: its own notifications (all ...E5) would
otherwise race the crafted ones, and an
equal-valued write with the lower stamp keeps its stamp (the README's documented residual
window), which on AWS cannot happen because the bucket's event has the real sequencer.

Sizes: 20 x 20 by default (CI), 100 x 100 (the issue's size) with SLUICE_FAULT_SCALE=full.
LocalStack's stream poller delivers ~15 records/s here, so the full size takes ~12 min.
"""

import datetime
import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import client, failure_records, invoke, log_lines, record_reliability, wait_until
from faultproxy import BAD_DAY, Rule, describe
from test_counter_mapper import aggregates as aggregate_items
from test_counter_mapper import counter_s3_event, stale_stream_images, wait_totals
from test_counter_mapper import entries_by_counter as instance_entries

FULL = os.environ.get("SLUICE_FAULT_SCALE") == "full"
INSTANCES, COUNTERS = (100, 100) if FULL else (20, 20)
WAIT = 1500 if FULL else 240
# Reordering/duplicates workload: instances x counters, each instance uploading VERSIONS files.
R_INSTANCES, R_COUNTERS, VERSIONS = 6, 10, 3
LOCALSTACK_STAMP = "0055AED6DCD90281E5"
COMMAND = "SLUICE_KEEP_LOCALSTACK=1 python -m pytest tests/e2e/test_faults_counters.py -q"


def fault_rules() -> list[Rule]:
    common = BAD_DAY
    return [
        # Forced early, so that every run shows the faults the test counts.
        Rule("dynamodb", "UpdateItem", **common, drop_response=0.02, first=("throttle", "pass", "error500", "pass", "drop_response")),
        Rule("dynamodb", "PutItem", **common, drop_response=0.02),
        Rule("dynamodb", "GetItem", **common),
        Rule("s3", "GetObject", **common, first=("throttle",)),
    ]


def unique_date() -> str:
    day = datetime.date(1950, 1, 1) + datetime.timedelta(days=random.randrange(0, 365 * 70))
    return day.isoformat()


def counter_key(outputs, date, instance) -> str:
    return f"{outputs['CounterPrefix']}{date}/values_{instance}"


def file_body(values: dict[str, int]) -> bytes:
    return "".join(f"{c} {v}\n" for c, v in values.items()).encode()


def aggregates(outputs, date) -> dict[str, int]:
    """counter -> Value of every aggregate of `date` (ByDate index)."""
    return {counter: item["Value"] for counter, item in aggregate_items(outputs, date).items()}


def failure_reason(record: dict) -> str:
    """The reason a Lambda on-failure record carries (function error, or the mapping's condition)."""
    response = record.get("responsePayload") or {}
    context = record.get("requestContext") or {}
    return response.get("errorType") or context.get("condition") or record.get("condition") or ""


def mapper_failed_keys(records: list[dict]) -> set[str]:
    """Object keys named by the mapper's on-failure records."""
    keys = set()
    for record in records:
        for outer in (record.get("requestPayload") or {}).get("Records", []):
            message = (outer.get("Sns") or {}).get("Message")
            inner = json.loads(message)["Records"] if message else [outer]
            keys.update(r["s3"]["object"]["key"] for r in inner if "s3" in r)
    return keys


def redrive_mapper(outputs, records: list[dict]) -> int:
    """Invokes the mapper again with each on-failure record's event (what an operator's
    redrive does); returns how many. Every one must now succeed."""
    for record in records:
        response, body = invoke(outputs["CounterMapperFunctionName"], record["requestPayload"])
        assert "FunctionError" not in response, f"redriven mapper event failed again: {body}"
    return len(records)


def stream_event_records(stream_arn: str, info: dict) -> list[dict]:
    """The stream records of a stream mapping's on-failure record (its shard and sequence
    range), in the shape Lambda hands them to the function."""
    streams = client("dynamodbstreams")
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=info["shardId"], ShardIteratorType="AT_SEQUENCE_NUMBER",
        SequenceNumber=info["startSequenceNumber"],
    )["ShardIterator"]
    end = int(info["endSequenceNumber"])
    records: list[dict] = []
    for _ in range(1000):  # bounded: a range is at most one batch
        page = streams.get_records(ShardIterator=iterator, Limit=1000)
        for record in page["Records"]:
            change = dict(record["dynamodb"])
            if int(change["SequenceNumber"]) > end:
                return records
            created = change.get("ApproximateCreationDateTime")
            if created is not None:
                change["ApproximateCreationDateTime"] = created.timestamp()
            records.append({**{k: v for k, v in record.items() if k != "dynamodb"}, "dynamodb": change,
                            "eventSourceARN": stream_arn})
        iterator = page.get("NextShardIterator")
        if not iterator or not page["Records"]:
            return records
    return records


def redrive_aggregator(outputs, records: list[dict]) -> int:
    """Replays each on-failure record's stream range into the aggregator (as Lambda would
    have delivered it); returns how many stream records. Every batch must now succeed."""
    replayed = 0
    for record in records:
        info = record["DDBStreamBatchInfo"]
        batch = stream_event_records(info["streamArn"], info)
        response, body = invoke(outputs["CounterAggregatorFunctionName"], {"Records": batch})
        assert "FunctionError" not in response and not (body or {}).get("batchItemFailures"), body
        replayed += len(batch)
    return replayed


def stable(fn, quiet: float, timeout: float):
    """Waits until `fn()` returns the same value twice `quiet` seconds apart; returns it."""
    deadline = time.monotonic() + timeout
    last = fn()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = fn()
        if now == last:
            return now
        last = now
    return last


def mapper_runs(outputs, date) -> int:
    """Mapper log lines of files of `date` it recorded (failed attempts included)."""
    return len([line for line in log_lines(outputs["CounterMapperFunctionName"], contains="counter file recorded")
                if date in line])


# --- the main workload ------------------------------------------------------------------


@pytest.mark.timeout(WAIT + 300)
def test_aggregates_equal_the_true_sums_under_faults(faulty_pipeline, faults):
    outputs = faulty_pipeline
    date = unique_date()
    instances = [f"i-{i:08x}" for i in range(INSTANCES)]
    counters = [f"C{c:03}" for c in range(COUNTERS)]
    values = {i: {c: random.randrange(-1000, 1_000_000) for c in counters} for i in instances}
    expected = {c: sum(values[i][c] for i in instances) for c in counters}
    failure_records(outputs["CounterMapperFailureQueueUrl"])
    failure_records(outputs["CounterAggregatorFailureQueueUrl"])

    rules = fault_rules()
    faults.set_rules(rules)
    started = time.monotonic()
    s3 = client("s3", max_pool_connections=16)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=outputs["CountersBucketName"],
                                              Key=counter_key(outputs, date, i), Body=file_body(values[i])),
                      instances))

    def all_recorded():
        entries = instance_entries(outputs, date, counters)
        return all(entries[c].get(i, (None,))[0] == values[i][c] for i in instances for c in counters)

    mapper_failures: list[dict] = []
    aggregator_failures: list[dict] = []
    last_change = {"at": time.monotonic(), "seen": None}

    def settled():
        mapper_failures.extend(failure_records(outputs["CounterMapperFailureQueueUrl"]))
        aggregator_failures.extend(failure_records(outputs["CounterAggregatorFailureQueueUrl"]))
        got = aggregates(outputs, date)
        if got == expected:
            return True
        if got != last_change["seen"]:
            last_change.update(at=time.monotonic(), seen=got)
        # Settled once the totals have stopped changing for a while and every value is in
        # the instance table — or, with something in a failure queue (which the test then
        # redrives), once they have stopped changing.
        quiet = time.monotonic() - last_change["at"]
        if mapper_failures or aggregator_failures:
            return quiet > 60
        return quiet > 45 and set(got) == set(expected) and all_recorded()

    wait_until(settled, timeout=WAIT, interval=2, message=f"{COUNTERS} aggregates equal the true sums")
    injected = faults.summary()
    mapper_failures.extend(failure_records(outputs["CounterMapperFailureQueueUrl"]))
    aggregator_failures.extend(failure_records(outputs["CounterAggregatorFailureQueueUrl"]))
    # What the failure queues hold is redriven without faults, as an operator would, and then
    # the totals are checked like any others: nothing in a failure queue excuses a total.
    faults.clear()
    failed_keys = mapper_failed_keys(mapper_failures)
    in_dlq = sum(1 for i in instances if counter_key(outputs, date, i) in failed_keys) * COUNTERS
    redriven = redrive_mapper(outputs, mapper_failures) + redrive_aggregator(outputs, aggregator_failures)
    if redriven:
        wait_totals(outputs, date, expected, all_recorded, timeout=300)
    elapsed = time.monotonic() - started

    entries = instance_entries(outputs, date, counters)
    got = aggregates(outputs, date)
    recorded = sum(1 for i in instances for c in counters if entries[c].get(i, (None,))[0] == values[i][c])
    extra = sum(1 for c in counters for i in entries[c] if i not in values)
    wrong_totals = [c for c in counters if got.get(c) != expected[c]]
    lost = INSTANCES * COUNTERS - recorded
    # LocalStack builds a stream record's NewImage by reading the item after the write and
    # numbers the record when it forwards it, so two concurrent writes to one item can
    # leave the highest-numbered record with the older image (on AWS the image is exactly
    # the item after that record's change). The aggregator rightly sums the newest record;
    # a total that equals that stale image's sum is LocalStack's, anything else is ours.
    stale_images = stale_stream_images(outputs, date, wrong_totals, got, entries)
    unexplained_totals = [c for c in wrong_totals if c not in stale_images]

    record_reliability(
        "counters",
        workload=f"{INSTANCES} instances x {COUNTERS} counters (one file per instance, one date), "
        f"S3 -> SNS -> counter-mapper -> stream -> counter-aggregator",
        faults=describe(rules),
        records_in=INSTANCES * COUNTERS,
        records_out=recorded,
        aggregates_correct=COUNTERS - len(wrong_totals),
        aggregates_total=COUNTERS,
        aggregates_from_stale_localstack_image=len(stale_images),
        in_dlq=in_dlq,
        redriven=redriven,
        lost=lost + len(unexplained_totals),
        duplicated=extra,
        dlq_reasons=sorted({failure_reason(r) for r in mapper_failures + aggregator_failures}),
        seconds=round(elapsed, 1),
        injected=injected,
        command=COMMAND + " -k true_sums" + (" (SLUICE_FAULT_SCALE=full)" if FULL else ""),
    )

    # (counted before the redrive: clearing the rules resets the proxy's counts)
    assert injected.get("dynamodb.UpdateItem throttle", 0) > 0, injected
    assert injected.get("dynamodb.UpdateItem error500", 0) > 0, injected
    assert injected.get("s3.GetObject throttle", 0) + injected.get("s3.GetObject error500", 0) > 0, injected
    for record in mapper_failures + aggregator_failures:
        assert failure_reason(record), f"an on-failure record without a reason: {record}"
    assert extra == 0, "instance entries that no file wrote"
    assert lost == 0, f"{lost} values not recorded, even after the failure queue was redriven"
    assert unexplained_totals == [], {c: (got.get(c), expected[c]) for c in unexplained_totals}
    if stale_images:
        missing = {c: sorted(set(values) - set(img)) for c, img in stale_images.items()}
        print(f"LocalStack stream: newest record of {sorted(stale_images)} carries an older image "
              f"(instances missing from it: {missing})")


# --- reordering and duplicates ----------------------------------------------------------


def stamp_of(version: int) -> str:
    """The sequencer S3 would give the `version`-th upload (1-based) of a key: increasing."""
    return f"0055AED6DCD90281{0xE5 + version:02X}"


@pytest.fixture
def quiet_bucket(faulty_pipeline):
    """The counters bucket with its notifications switched off for the test (restored
    after): its uploads reach the mapper only through the notifications the test publishes."""
    s3 = client("s3")
    name = faulty_pipeline["CountersBucketName"]
    saved = s3.get_bucket_notification_configuration(Bucket=name)
    saved.pop("ResponseMetadata", None)
    s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration={})
    try:
        yield name
    finally:
        s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration=saved)


def upload_versions(bucket, outputs, date, versions: dict[str, list[dict[str, int]]]) -> dict[str, list[str]]:
    """Uploads every instance's versions in order; returns instance -> version ids."""
    s3 = client("s3")

    def one(instance):
        return instance, [
            s3.put_object(Bucket=bucket, Key=counter_key(outputs, date, instance),
                          Body=file_body(v))["VersionId"]
            for v in versions[instance]
        ]

    with ThreadPoolExecutor(6) as pool:
        return dict(pool.map(one, versions))


@pytest.mark.timeout(600)
def test_newest_first_and_duplicated_deliveries_leave_the_clean_state(faulty_pipeline, faults, quiet_bucket):
    outputs = faulty_pipeline
    sns = client("sns")
    instances = [f"i-r{i:04x}" for i in range(R_INSTANCES)]
    counters = [f"R{c:02}" for c in range(R_COUNTERS)]
    # Every version changes every value (an unchanged value writes no stamp; see README).
    versions = {i: [{c: random.randrange(0, 1_000_000) * VERSIONS + v for c in counters} for v in range(VERSIONS)]
                for i in instances}
    newest = {i: versions[i][-1] for i in instances}
    expected = {c: sum(newest[i][c] for i in instances) for c in counters}
    final_entries = {c: {i: (newest[i][c], stamp_of(VERSIONS) + "0" * 14) for i in instances} for c in counters}

    def publish(date, instance, version_ids, version):
        event = counter_s3_event(
            outputs, date, instance, version_ids[instance][version - 1], stamp_of(version), bucket=quiet_bucket
        )
        sns.publish(TopicArn=outputs["CounterUploadsTopicArn"], Message=json.dumps(event),
                    Subject="Amazon S3 Notification")

    # Clean run: no faults, each version's notification once, oldest first, each recorded
    # before the next is sent.
    faults.clear()
    clean = unique_date()
    clean_ids = upload_versions(quiet_bucket, outputs, clean, versions)
    for version in range(1, VERSIONS + 1):
        for instance in instances:
            publish(clean, instance, clean_ids, version)
        want = {c: {i: (versions[i][version - 1][c], stamp_of(version) + "0" * 14) for i in instances}
                for c in counters}
        wait_until(lambda: instance_entries(outputs, clean, counters) == want, timeout=120, interval=1,
                   message=f"clean run: version {version} recorded")
    wait_totals(outputs, clean, expected, lambda: instance_entries(outputs, clean, counters) == final_entries,
                timeout=300)

    # Faulty run: newest first, every notification twice, the newest once more at the end.
    rules = fault_rules()
    faults.set_rules(rules)
    shuffled = unique_date()
    ids = upload_versions(quiet_bucket, outputs, shuffled, versions)
    deliveries = 0
    for instance in instances:
        for version in [*range(VERSIONS, 0, -1), *range(VERSIONS, 0, -1), VERSIONS]:
            publish(shuffled, instance, ids, version)
            deliveries += 1
    wait_until(lambda: instance_entries(outputs, shuffled, counters) == final_entries, timeout=180, interval=1,
               message="newest-first run: newest values recorded")
    wait_totals(outputs, shuffled, expected, lambda: instance_entries(outputs, shuffled, counters) == final_entries,
                timeout=300)
    # Let every delivery finish before comparing.
    wait_until(lambda: mapper_runs(outputs, shuffled) >= deliveries, timeout=180, interval=2,
               message="every delivery processed")
    stable(lambda: mapper_runs(outputs, shuffled), quiet=5, timeout=60)
    injected = faults.summary()
    faults.clear()

    clean_state = (instance_entries(outputs, clean, counters), aggregates(outputs, clean))
    shuffled_state = (instance_entries(outputs, shuffled, counters), aggregates(outputs, shuffled))
    failures = failure_records(outputs["CounterMapperFailureQueueUrl"])
    mine = [k for k in mapper_failed_keys(failures) if shuffled in k or clean in k]
    same = clean_state[0] == shuffled_state[0]
    same_totals = clean_state[1] == shuffled_state[1] == expected
    record_reliability(
        "counters-reordered",
        workload=f"{R_INSTANCES} instances x {R_COUNTERS} counters x {VERSIONS} versions; notifications "
        f"newest first, each twice, newest again last ({deliveries} deliveries) vs a clean in-order run",
        faults=describe(rules),
        records_in=R_INSTANCES * R_COUNTERS,
        records_out=sum(1 for c in counters for i in instances
                        if shuffled_state[0][c].get(i) == final_entries[c][i]),
        in_dlq=len(mine),
        lost=sum(1 for c in counters for i in instances if shuffled_state[0][c].get(i) != final_entries[c][i]),
        duplicated=sum(1 for c in counters for i in shuffled_state[0][c] if i not in newest),
        same_instance_entries_as_clean_run=same,
        totals_equal_true_sums_in_both_runs=same_totals,
        injected=injected,
        command=COMMAND + " -k newest_first",
    )

    assert sum(n for k, n in injected.items() if not k.endswith(" pass")) > 0, injected
    assert mine == [], failures
    # The instance table (what ordering and duplicates decide) must be identical and exact.
    assert shuffled_state[0] == clean_state[0] == final_entries
    # Totals: the true sums, except where LocalStack's newest stream record of an item
    # carries a stale image (see the other test) — then the total is that image's sum.
    for date, (entries, got) in ((clean, clean_state), (shuffled, shuffled_state)):
        wrong = [c for c in counters if got.get(c) != expected[c]]
        stale = stale_stream_images(outputs, date, wrong, got, entries)
        assert sorted(stale) == wrong, {c: (got.get(c), expected[c]) for c in wrong if c not in stale}
