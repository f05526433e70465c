"""avro-converter under injected faults, end to end: snappy JSON files put into the raw bucket
of ``faulty_pipeline`` (the real trigger: S3 notification -> async invoke of the release zip)
while the fault proxy throttles, fails, drops, loses the answers of and delays the function's
S3 calls. Afterwards every record is in the Avro output exactly once (read back with fastavro)
or in the error prefix with its reason; an input whose reads keep failing lands in the
on-failure queue after the configured retries and converts when redriven; the same input
delivered again rewrites the same files with the same bytes.

Sizes: ``SLUICE_FAULT_SCALE=full`` converts the issue's 200 files of 50 records; the default
(CI) 200 files of 10 records."""

import io
import json
import os
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import fastavro
import pytest
from conftest import FAULT_SEED, client, invoke, log_lines, marker, record_reliability, wait_until
from faultproxy import Rule
from test_avro_converter import avro_name, expected, framed_snappy, ndjson, player_event, raw_snappy, s3_event

pytestmark = pytest.mark.timeout(600)

FULL = os.environ.get("SLUICE_FAULT_SCALE") == "full"
FILES = 200
RECORDS_PER_FILE = 50 if FULL else 10
# 2024-05-14T09:59:00Z: every file's records straddle 10:00, so each input writes two hours.
BASE_MS = 1_715_680_740_000
DAY = "year=2024/month=05/day=14"
HOURS = ("hour=09", "hour=10")

# What a bad day looks like for S3: throttles, 500s, dropped connections, answers lost after
# the write happened, and latency; a catch-all for anything else the function calls.
S3_FAULTS = dict(throttle=0.20, error500=0.05, drop=0.02, drop_response=0.02, latency=(0.0, 0.05))
# Each fault the assertions below count is forced once early on each call (between passes), so
# every run shows all of them; the rates then apply to the rest.
FORCED = ("throttle", "pass", "error500", "pass", "drop", "pass", "drop_response")
RULES = [
    Rule("s3", "GetObject", **S3_FAULTS, first=FORCED),
    Rule("s3", "PutObject", **S3_FAULTS, first=FORCED),
    Rule("*", "*", throttle=0.20, error500=0.05),
]
FAULTS = (
    "S3 GetObject/PutObject: 20% SlowDown 503, 5% 500 InternalError, 2% connection dropped before the "
    "call, 2% response lost after the call, 0-50 ms latency, and each of these forced once in the first 7 "
    "calls of each; any other call: 20% throttle, 5% 500"
)


@pytest.fixture(scope="module")
def stack(faulty_pipeline, fault_proxy):
    out = {
        "s3": client("s3"),
        "sqs": client("sqs"),
        "raw": faulty_pipeline["AvroRawBucketName"],
        "input_prefix": faulty_pipeline["AvroInputPrefix"],
        "out": faulty_pipeline["AvroOutputBucketName"],
        "out_prefix": faulty_pipeline["AvroOutputPrefix"],
        "err_prefix": faulty_pipeline["AvroErrorPrefix"],
        "function": faulty_pipeline["AvroConverterFunctionName"],
        "failures": faulty_pipeline["AvroConverterFailureQueueUrl"],
    }
    yield out
    fault_proxy.clear()


def keys_under(stack, prefix):
    pages = stack["s3"].get_paginator("list_objects_v2").paginate(Bucket=stack["out"], Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def get(stack, key) -> bytes:
    return stack["s3"].get_object(Bucket=stack["out"], Key=key)["Body"].read()


def avro_key(stack, hour, input_key):
    return f"{stack['out_prefix']}{DAY}/{hour}/{avro_name(input_key)}.avro"


def errors_key(stack, input_key):
    directory, name = input_key.rsplit("/", 1)
    return f"{stack['err_prefix']}{directory}/{name.removesuffix('.json.snappy')}.errors.jsonl"


class FailureQueue:
    """The on-failure destination, read (and emptied) as it fills: LocalStack's destination
    records, keyed by the input key of the S3 event they carry."""

    def __init__(self, stack, m):
        self.stack, self.marker = stack, m
        self.records: dict[str, list[dict]] = {}

    def poll(self) -> dict[str, list[dict]]:
        sqs = self.stack["sqs"]
        while True:
            got = sqs.receive_message(QueueUrl=self.stack["failures"], MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = got.get("Messages", [])
            if not messages:
                return self.records
            for m in messages:
                body = json.loads(m["Body"])
                for record in body.get("requestPayload", {}).get("Records", []):
                    key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
                    if self.marker in key:  # leftovers of other runs on a kept stack are not ours
                        self.records.setdefault(key, []).append(body)
            sqs.delete_message_batch(
                QueueUrl=self.stack["failures"],
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )


def read_records(stack, keys):
    """event_id -> how many times it is in the Avro files ``keys``; and the records."""
    seen, records = Counter(), {}
    for key in sorted(keys):
        reader = fastavro.reader(io.BytesIO(get(stack, key)))
        assert reader.codec == "snappy", key
        for record in reader:
            seen[record["event_id"]] += 1
            records[record["event_id"]] = record
    return seen, records


def redrive(stack, body) -> dict:
    """An operator's redrive: invoke the function again with the failed event, until it answers."""

    def attempt():
        response, summary = invoke(stack["function"], body["requestPayload"])
        return summary if "FunctionError" not in response else None

    return wait_until(attempt, timeout=120, interval=1, message="redriven event converted")


def workload(stack, m):
    """FILES inputs of RECORDS_PER_FILE records each in every snappy/JSON shape, and poison:
    a file with records that break the schema, corrupt snappy, and snappy that is not JSON."""
    prefix = f"{stack['input_prefix']}faults/{m}/"
    inputs, good = {}, {}
    for f in range(FILES):
        events = []
        for r in range(RECORDS_PER_FILE):
            event = player_event(r, BASE_MS + r * (120_000 // RECORDS_PER_FILE) + f)  # 09:59:00 .. 10:00:59
            event["event_id"] = f"{m}-{f:04d}-{r:03d}"
            events.append(event)
        if f % 4 == 0:
            body = framed_snappy(json.dumps(events).encode())  # a JSON array
        elif f % 4 == 1:
            body = raw_snappy(ndjson(events))
        else:
            body = framed_snappy(ndjson(events))
        key = f"{prefix}player-{m}-{f:04d}.json.snappy"
        inputs[key] = body
        good[key] = events
    # Poison 1: two records of this file break the schema; the rest of it still converts.
    events = []
    for r in range(RECORDS_PER_FILE):
        event = player_event(r, BASE_MS + r * 1_000)
        event["event_id"] = f"{m}-schema-{r:03d}"
        events.append(event)
    bad = {events[1]["event_id"]: "$.bitrate_kbps", events[3]["event_id"]: "$.PTS"}
    events[1]["bitrate_kbps"] = "high"
    events[3]["PTS"] = "yesterday"
    schema_key = f"{prefix}schema-{m}.json.snappy"
    inputs[schema_key] = framed_snappy(ndjson(events))
    good[schema_key] = [e for e in events if e["event_id"] not in bad]
    # Poison 2 and 3: whole inputs that can never convert.
    corrupt = bytearray(framed_snappy(ndjson(events)))
    corrupt[len(corrupt) // 2] ^= 0xFF  # a flipped byte: the chunk's CRC no longer matches
    rejected = {
        f"{prefix}corrupt-{m}.json.snappy": ("not_snappy", bytes(corrupt), len(events)),
        f"{prefix}notjson-{m}.json.snappy": ("not_json", raw_snappy(b"PTS;event_id\n1715680797000;e-1\n"), 1),
    }
    for key, (_, body, _) in rejected.items():
        inputs[key] = body
    return inputs, good, bad, schema_key, rejected


@pytest.mark.timeout(900 if FULL else 420)
def test_every_record_converted_once_or_rejected_with_its_reason_under_s3_faults(stack, fault_proxy):
    m = marker()
    inputs, good, bad, schema_key, rejected = workload(stack, m)
    failures = FailureQueue(stack, m)
    started = time.monotonic()

    fault_proxy.set_rules(RULES)
    try:
        s3 = stack["s3"]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda kv: s3.put_object(Bucket=stack["raw"], Key=kv[0], Body=kv[1]), inputs.items()))

        def outputs_of(key):
            if key in rejected:
                return {errors_key(stack, key), f"{stack['err_prefix']}{key}"}
            hours = {h for h in HOURS for e in good[key] if e["PTS"] // 3_600_000 % 24 == int(h[-2:])}
            wanted = {avro_key(stack, h, key) for h in hours}
            return wanted | ({errors_key(stack, key)} if key == schema_key else set())

        wanted = {key: outputs_of(key) for key in inputs}

        def settled():
            present = keys_under(stack, f"{stack['out_prefix']}{DAY}/") | keys_under(
                stack, f"{stack['err_prefix']}{stack['input_prefix']}faults/{m}/"
            )
            in_failure_queue = failures.poll()
            pending = [k for k, w in wanted.items() if not w <= present and k not in in_failure_queue]
            return not pending

        wait_until(settled, timeout=600 if FULL else 300, interval=2, message="every input converted, rejected or failed")
        converted_at = time.monotonic() - started
        # A failed attempt is retried by Lambda 1 s and 2 s later (LAMBDA_RETRY_BASE_DELAY=1): give
        # the last one time to reach the on-failure queue before counting.
        time.sleep(4)
        failed_events = failures.poll()
        injected = fault_proxy.summary()
        stats = dict(fault_proxy.stats)
    finally:
        fault_proxy.clear()

    # The proxy really hurt the function's reads and writes.
    for op in ("GetObject", "PutObject"):
        for outcome in ("throttle", "error500", "drop", "drop_response"):
            assert stats.get(("s3", op, outcome), 0) > 0, (op, outcome, injected)

    # Events that failed all their attempts are in the on-failure queue with the error: an
    # operator redrives them (faults off now; the function is idempotent, so this is safe).
    in_failure_queue = sorted(failed_events)
    for key, bodies in failed_events.items():
        for body in bodies:
            assert body["requestContext"]["approximateInvokeCount"] == 3, body["requestContext"]
            assert body["responsePayload"]["errorType"] in ("Retryable.S3", "Permanent.S3"), body
        redrive(stack, bodies[0])

    # Every good record exactly once across all Avro files of this run, as the schema makes it.
    avro_files = {k for k in keys_under(stack, f"{stack['out_prefix']}{DAY}/") if m in k}
    assert avro_files == {k for key in inputs for k in wanted[key] if k.endswith(".avro")}
    seen, records = read_records(stack, avro_files)
    good_ids = {e["event_id"]: e for events in good.values() for e in events}
    missing = sorted(set(good_ids) - set(seen))
    duplicated = sorted(i for i, n in seen.items() if n > 1)
    extra = sorted(set(seen) - set(good_ids))
    assert not missing, f"{len(missing)} records lost: {missing[:5]}"
    assert not duplicated, f"{len(duplicated)} records duplicated: {duplicated[:5]}"
    assert not extra, extra[:5]
    for event_id, event in good_ids.items():
        assert records[event_id] == expected([event])[0], event_id

    # The records that break the schema are in the errors file with their reasons.
    lines = [json.loads(line) for line in get(stack, errors_key(stack, schema_key)).splitlines()]
    assert {line["record"]["event_id"]: line["path"] for line in lines} == bad
    assert all(line["source"] == f"s3://{stack['raw']}/{schema_key}" and line["reason"] for line in lines)
    # The inputs that can never convert are copied to the error prefix with the reason.
    for key, (kind, body, _) in rejected.items():
        [line] = [json.loads(x) for x in get(stack, errors_key(stack, key)).splitlines()]
        assert (line["kind"], line["source"]) == (kind, f"s3://{stack['raw']}/{key}"), line
        assert line["reason"], line
        assert get(stack, f"{stack['err_prefix']}{key}") == body

    records_in = sum(len(events) for events in good.values()) + len(bad) + sum(n for _, _, n in rejected.values())
    in_error_prefix = len(bad) + sum(n for _, _, n in rejected.values())
    records_out = len(seen)
    lost = records_in - records_out - in_error_prefix
    assert lost == 0
    attempts_failed = len([l for l in log_lines(stack["function"], contains=m) if '"message":"invocation failed"' in l])
    record_reliability(
        "avro-converter",
        workload=(
            f"{FILES} snappy JSON files x {RECORDS_PER_FILE} records (raw/framed snappy, NDJSON and arrays, "
            f"each spanning two hours) + 1 file with 2 schema-breaking records + 1 corrupt-snappy and "
            f"1 not-JSON input, put into the raw bucket (S3 notification -> async invoke)"
        ),
        faults=FAULTS,
        records_in=records_in,
        records_out=records_out,
        in_dlq=in_error_prefix,
        in_failure_queue_redriven=len(in_failure_queue),
        lost=lost,
        duplicated=len(duplicated),
        failed_attempts_retried=attempts_failed,
        seconds_to_settle=round(converted_at, 1),
        injected=injected,
        command=(
            f"SLUICE_FAULT_SEED={FAULT_SEED}{' SLUICE_FAULT_SCALE=full' if FULL else ''} "
            "python -m pytest tests/e2e/test_faults_avro_converter.py"
        ),
    )


@pytest.mark.timeout(360)
def test_an_input_whose_reads_keep_failing_reaches_the_failure_queue_then_redrives(stack, fault_proxy):
    """Poison on the async path: every GetObject fails, so each invocation retries the read
    until its deadline (the fault stack's AvroConverterTimeoutSeconds, 20 s) and fails, Lambda
    retries it twice (AvroConverterAsyncConfig), then the event goes to the on-failure queue
    with the error. Redriven once S3 answers again, it converts."""
    m = marker()
    key = f"{stack['input_prefix']}faults/{m}/stuck-{m}.json.snappy"
    events = [player_event(r, BASE_MS + r * 30_000) for r in range(4)]  # 09:59:00 .. 10:00:30
    for r, e in enumerate(events):
        e["event_id"] = f"{m}-stuck-{r}"
    failures = FailureQueue(stack, m)
    fault_proxy.set_rules([Rule("s3", "GetObject", throttle=1.0)])
    try:
        stack["s3"].put_object(Bucket=stack["raw"], Key=key, Body=framed_snappy(ndjson(events)))
        found = wait_until(lambda: failures.poll().get(key), timeout=240, interval=1, message="event in the failure queue")
        throttled = fault_proxy.stats[("s3", "GetObject", "throttle")]
    finally:
        fault_proxy.clear()
    [body] = found
    assert body["requestContext"]["approximateInvokeCount"] == 3  # the first attempt and two retries
    assert body["responsePayload"]["errorType"] == "Retryable.S3"
    assert "SlowDown" in body["responsePayload"]["errorMessage"]
    assert throttled >= 6, f"{throttled}: the read was retried within each invocation"
    assert not {k for k in keys_under(stack, stack["out_prefix"]) if m in k}, "nothing written while failing"

    summary = redrive(stack, body)
    assert summary["objects"][0]["outcome"] == "converted", summary
    files = {avro_key(stack, h, key) for h in HOURS}
    seen, _ = read_records(stack, files)
    assert seen == Counter(e["event_id"] for e in events)


def test_the_same_input_delivered_again_under_faults_rewrites_the_same_bytes(stack, fault_proxy):
    """Duplicate delivery: S3 notifies again for the same object (put again, same bytes) and the
    same event is invoked once more, both with the S3 faults on: no new keys, the same bytes."""
    m = marker()
    prefix = f"{stack['input_prefix']}faults/{m}/"
    inputs = {}
    for f in range(5):
        events = [player_event(r, BASE_MS + r * 20_000) for r in range(6)]
        for r, e in enumerate(events):
            e["event_id"] = f"{m}-dup-{f}-{r}"
        inputs[f"{prefix}dup-{m}-{f}.json.snappy"] = framed_snappy(ndjson(events))
    files = {avro_key(stack, h, key) for key in inputs for h in HOURS}
    s3 = stack["s3"]

    def converted_lines(key):
        return [l for l in log_lines(stack["function"], contains='"message":"converted"') if f'"key":"{key}"' in l]

    fault_proxy.set_rules(RULES)
    try:
        for key, body in inputs.items():
            s3.put_object(Bucket=stack["raw"], Key=key, Body=body)
        wait_until(lambda: files <= keys_under(stack, f"{stack['out_prefix']}{DAY}/"), timeout=120, interval=1)
        for key in inputs:
            wait_until(lambda: len(converted_lines(key)) >= 1, timeout=60, message=f"{key} converted once")
        before = {k: get(stack, k) for k in files}
        # Delivered twice more: S3 notifies again for the same bytes, and the event is re-invoked.
        for key, body in inputs.items():
            s3.put_object(Bucket=stack["raw"], Key=key, Body=body)
            event = s3_event(stack, key)
            client("lambda").invoke(FunctionName=stack["function"], InvocationType="Event", Payload=json.dumps(event))
        for key in inputs:
            wait_until(lambda: len(converted_lines(key)) >= 3, timeout=120, interval=1, message=f"{key} converted 3 times")
        injected = fault_proxy.injected()
    finally:
        fault_proxy.clear()
    assert injected > 0
    assert {k for k in keys_under(stack, stack["out_prefix"]) if m in k} == files, "no new keys"
    after = {k: get(stack, k) for k in files}
    assert after == before, "the same bytes"
    seen, _ = read_records(stack, files)
    assert set(seen.values()) == {1} and len(seen) == 30
