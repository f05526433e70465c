"""The operator's command line (``tools/sluice-cli``, binary ``sluice``) end to end, run as a
subprocess against stacks deployed on LocalStack with the release zips (issue #19):

- ``status`` and ``redrive``: items are parked by forcing real failures through the fault
  proxy on the fault stack (S3 reads and writes and DynamoDB writes denied for this run's
  keys), or, for crash-router's DLQ, put there as SQS moves them (unchanged, after 5
  receives 30 s apart: too slow for CI); ``status`` shows each with its reason; ``redrive``
  brings every one through to the normal output, nothing duplicated, the poison skipped and
  named; a second ``redrive`` moves nothing.
- ``backfill``: the Avro outputs of this run's raw inputs, deleted and made again by the
  CLI, are the same bytes.
- ``replay``: archived events put back on the stream at a bounded rate, stopped and resumed;
  the archiver writes every one again, none lost, none twice.
"""

import bz2
import io
import json
import os
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import fastavro
import pytest

from conftest import ENDPOINT, REGION, REPO, client, invoke, marker, wait_until
from faultproxy import Rule
from test_avro_converter import avro_name, framed_snappy, ndjson, player_event, raw_snappy
from test_counter_mapper import unique_date
from test_crash_router import crash_id, raw_key
from test_faults_ingest_archive import bzip2_contains

pytestmark = pytest.mark.timeout(300)

TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "sluice" / "target")
BINARY = TARGET / "debug" / "sluice"

# Exit codes (tools/sluice-cli/src/error.rs).
OK, USAGE, NOT_FOUND, INCOMPLETE = 0, 2, 3, 4

# Skip reasons (tools/sluice-cli/src/redrive.rs).
NOT_AN_EVENT = "not an event the function reads (it would fail again)"


@pytest.fixture(scope="session")
def sluice_binary():
    """The CLI, built (dev profile) if this session finds it missing."""
    if not BINARY.is_file():
        subprocess.run(
            ["cargo", "build", "--quiet", "-p", "sluice-cli"],
            cwd=REPO,
            check=True,
            env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)},
            timeout=1800,
        )
    assert BINARY.is_file(), BINARY
    return BINARY


def run_sluice(binary, stack: str, *args: str, timeout: float = 240) -> tuple[int, str, str]:
    """Runs ``sluice --stack <stack> <args>`` against LocalStack; (exit code, stdout, stderr)."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.pop("AWS_PROFILE", None)
    done = subprocess.run(
        [str(binary), "--endpoint-url", ENDPOINT, "--stack", stack, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    print(f"$ sluice --stack {stack} {' '.join(args)}  -> {done.returncode}\n{done.stdout}{done.stderr}")
    return done.returncode, done.stdout, done.stderr


def sluice_json(binary, stack: str, *args: str, expect: int = OK) -> dict:
    code, out, err = run_sluice(binary, stack, *args, "--json")
    assert code == expect, f"exit {code}, expected {expect}: {err}"
    return json.loads(out)


def redrive_paths(binary, stack: str, function: str, *args: str, expect: int | None = OK) -> list[dict]:
    code, out, err = run_sluice(binary, stack, "redrive", function, "--json", *args)
    if expect is not None:
        assert code == expect, f"exit {code}, expected {expect}: {err}"
    summary = json.loads(out)
    [report] = summary["functions"]
    return report["paths"]


def left_in_place(path: dict) -> int:
    return path["skipped"] + path["failed_again"]


# --- checks on the stacks' outputs ---


def queue_bodies_taken(url: str, wanted: set[str], timeout: float) -> Counter:
    """Reads a queue until every body in ``wanted`` was seen (or ``timeout``); deletes those,
    gives the others back. Returns how many times each wanted body came."""
    sqs = client("sqs")
    seen: Counter = Counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=5)
        for message in got.get("Messages", []):
            if message["Body"] in wanted:
                seen[message["Body"]] += 1
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            else:
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
        if set(seen) >= wanted and not got.get("Messages"):
            break
    return seen


def archive_lines_with(outputs, tag: str, since: float) -> list[bytes]:
    """Every archive line holding ``tag``, in objects written since ``since`` (epoch s)."""
    s3, bucket = client("s3"), outputs["ArchiveBucketName"]
    prefix = outputs["ArchiveLocation"].removeprefix(f"s3://{bucket}/")
    lines = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["LastModified"].timestamp() < since - 2:
                continue
            body = bz2.decompress(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
            lines += [line for line in body.split(b"\n") if tag.encode() in line]
    return lines


def aggregate_total(outputs, counter: str, date: str):
    item = client("dynamodb").get_item(
        TableName=outputs["AggregateTableName"],
        Key={"Counter": {"S": counter}, "Date": {"S": date}},
        ConsistentRead=True,
    ).get("Item")
    return int(item["Value"]["N"]) if item else None


def avro_records(outputs, keys) -> Counter:
    s3, bucket = client("s3"), outputs["AvroOutputBucketName"]
    seen: Counter = Counter()
    for key in keys:
        for record in fastavro.reader(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())):
            seen[record["event_id"]] += 1
    return seen


def keys_under(bucket: str, prefix: str, containing: str = "") -> list[str]:
    s3, keys = client("s3"), []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if containing in o["Key"]]
    return sorted(keys)


def s3_notification(bucket: str, key: str) -> str:
    """The body S3 puts on a notification queue for a new object (kept unchanged in a DLQ)."""
    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
        "eventTime": "2026-03-14T12:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "raw-crash-uploads",
               "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": key, "size": 27, "eTag": "0b1c5e1f4e0f4d8a9c1b2a3d4e5f6a7b", "sequencer": "0065F2F1A0B1C2D3E4"}},
    }]})


# --- the tests ---


def test_a_stack_or_a_prefix_that_does_not_exist_is_a_clear_error(sluice_binary, pipeline):
    code, _, err = run_sluice(sluice_binary, "no-such-stack", "status")
    assert code == NOT_FOUND and "stack no-such-stack does not exist" in err, err
    code, _, err = run_sluice(sluice_binary, pipeline["StackName"], "redrive", "avro-convertr")
    assert code == USAGE and "avro-converter" in err, err
    tag = marker()
    raw = pipeline["AvroRawBucketName"]
    code, _, err = run_sluice(sluice_binary, pipeline["StackName"], "backfill", "avro-converter", f"s3://{raw}/incoming/{tag}/")
    assert code == NOT_FOUND and f"nothing under s3://{raw}/incoming/{tag}/" in err, err
    code, _, err = run_sluice(sluice_binary, pipeline["StackName"], "backfill", "avro-converter", f"s3://{pipeline['ArchiveBucketName']}/")
    assert code == USAGE and "not avro-converter's input bucket" in err, err


@pytest.mark.timeout(420)
def test_status_shows_what_failures_parked_and_redrive_brings_each_through_once(sluice_binary, faulty_pipeline, faults):
    outputs, stack = faulty_pipeline, faulty_pipeline["StackName"]
    tag = marker()
    started = time.time()
    paths = ["kinesis-archiver", "avro-converter", "crash-router", "counter-mapper", "counter-aggregator"]

    # What earlier runs left on this stack is redriven (or skipped) first: the counts below
    # are then this test's own.
    baseline = {}
    for function in [*paths, "job-poller"]:
        for path in redrive_paths(sluice_binary, stack, function, expect=None):
            baseline[(function, path["path"])] = left_in_place(path)

    # --- park items, each by a failure it cannot get past ---
    # Reads of keys holding "denied-<tag>" are refused (two raw inputs, one counter file).
    denied = f"denied-{tag}"
    avro_keys = [f"{outputs['AvroInputPrefix']}{tag}/{denied}-{n}.json.snappy" for n in range(2)]
    avro_events = {}
    for n, key in enumerate(avro_keys):
        avro_events[key] = [player_event(i, 1_715_680_797_000 + i * 1000) for i in range(3)]  # hour 09
        for i, e in enumerate(avro_events[key]):
            e["event_id"] = f"{tag}-{n}-{i}"
    mapper_date, aggregator_date = unique_date(), unique_date()
    mapper_key = f"{outputs['CounterPrefix']}{mapper_date}/values_i-{denied}"
    mapper_values = {f"M1-{tag}": 11, f"M2-{tag}": 22}
    # The aggregator's reads and writes of this counter's total are refused.
    aggregated = f"A-{tag}"
    aggregator_key = f"{outputs['CounterPrefix']}{aggregator_date}/values_i-ok-{tag}"
    poison = f"POISON-{tag}"
    archiver_events = [json.dumps({"player_id": "p-7", "n": n, "note": poison}, separators=(",", ":")) for n in range(5)]
    aggregates = outputs["AggregateTableName"].encode()
    faults.set_rules([
        Rule("s3", "GetObject", deny=1.0, when=lambda m, p, b: denied in p),
        Rule("s3", "PutObject", deny=1.0, when=bzip2_contains(poison.encode())),
        Rule("dynamodb", "GetItem", deny=1.0, when=lambda m, p, b: aggregates in b and aggregated.encode() in b),
        Rule("dynamodb", "UpdateItem", deny=1.0, when=lambda m, p, b: aggregates in b and aggregated.encode() in b),
    ])
    s3, sqs = client("s3"), client("sqs")
    for n, (key, events) in enumerate(avro_events.items()):
        body = framed_snappy(ndjson(events)) if n else raw_snappy(ndjson(events))
        s3.put_object(Bucket=outputs["AvroRawBucketName"], Key=key, Body=body)
    # An event avro-converter cannot read: it fails as InvalidEvent and is parked too.
    invoke(outputs["AvroConverterFunctionName"], {"Records": [{"eventSource": f"aws:{tag}"}]}, InvocationType="Event")
    s3.put_object(Bucket=outputs["CountersBucketName"], Key=mapper_key,
                  Body="".join(f"{c} {v}\n" for c, v in mapper_values.items()).encode())
    s3.put_object(Bucket=outputs["CountersBucketName"], Key=aggregator_key, Body=f"{aggregated} 7\n".encode())
    client("kinesis").put_records(
        StreamName=outputs["EventStreamName"],
        Records=[{"Data": e.encode(), "PartitionKey": "p-7"} for e in archiver_events],
    )
    crashes = [crash_id() for _ in range(2)]
    crash_bodies = {s3_notification(outputs["CrashBucketName"], raw_key(c)) for c in crashes}
    for body in [*crash_bodies, f"not a notification {tag}"]:
        sqs.send_message(QueueUrl=outputs["CrashNotificationDlqUrl"], MessageBody=body)
    invoke(outputs["JobPollerFunctionName"], {"kind": "sluice-cli-test", f"field_{tag}": 1}, InvocationType="Event")

    def parked():
        status = sluice_json(sluice_binary, stack, "status", expect=INCOMPLETE)
        got = {(f["function"], p["path"]): p for f in status["functions"] for p in f["failure_paths"]}
        mine = {
            ("avro-converter", "failure queue"): 3,
            ("counter-mapper", "failure queue"): 1,
            ("kinesis-archiver", "kept batches"): 1,
            ("counter-aggregator", "failure queue"): 1,
            ("crash-router", "DLQ"): 3,
            ("job-poller", "failure queue"): 1,
        }
        waiting = {k: got[k]["parked"] for k, n in mine.items() if got[k]["parked"] < baseline.get(k, 0) + n}
        return (status, got) if not waiting else None

    status, got = wait_until(parked, timeout=240, interval=5, message="every item parked")
    parked_after = time.time() - started
    faults.clear()

    # --- status: counts, ages and reasons ---
    assert status["parked"] >= 10
    for key, path in got.items():
        if path["parked"]:
            assert path["oldest_age_seconds"] is not None and path["oldest_reason"], (key, path)
    reasons = {k: got[k]["oldest_reason"] for k in got if got[k]["parked"]}
    assert "RetryAttemptsExhausted" in reasons[("kinesis-archiver", "kept batches")]
    assert got[("kinesis-archiver", "kept batches")]["announcements"] >= 1
    assert "RetryAttemptsExhausted" in reasons[("counter-aggregator", "failure queue")]
    assert "DLQ" in reasons[("crash-router", "DLQ")] or "not an S3 notification" in reasons[("crash-router", "DLQ")]
    if not baseline.get(("avro-converter", "failure queue")):
        assert any(t in reasons[("avro-converter", "failure queue")] for t in ("Retryable.S3", "Permanent.S3", "Permanent.InvalidEvent")), reasons
    if not baseline.get(("counter-mapper", "failure queue")):
        assert "Permanent.Read" in reasons[("counter-mapper", "failure queue")], reasons
        assert tag in got[("counter-mapper", "failure queue")]["oldest_subject"]
    logged = {f["function"]: f for f in status["functions"]}
    # The archiver logs a group it could not write (to be redelivered) at WARN, a function
    # that fails its invocation at ERROR; Lambda counts the failed invocations.
    assert logged["kinesis-archiver"]["warnings_last_hour"]["count"] >= 1
    assert logged["avro-converter"]["errors_last_hour"]["count"] >= 1
    assert logged["avro-converter"]["failed_invocations_last_hour"] >= 9, "3 events, 3 attempts each"
    code, table, _ = run_sluice(sluice_binary, stack, "status")
    assert code == INCOMPLETE and "FAILURE PATH" in table and "kept batches" in table

    # --- a dry run says what it would do and changes nothing ---
    [dry] = redrive_paths(sluice_binary, stack, "avro-converter", "--dry-run")
    assert (dry["redriven"], dry["failed_again"]) == (2, 0), dry
    assert all(i["outcome"] in ("would_redrive", "skipped") for i in dry["items"])
    again = sluice_json(sluice_binary, stack, "status", expect=INCOMPLETE)
    assert next(p for f in again["functions"] if f["function"] == "avro-converter" for p in f["failure_paths"])["parked"] == got[("avro-converter", "failure queue")]["parked"]

    # --- redrive: every item back through its trigger ---
    redriven = {}
    t0 = time.time()
    for function in paths:
        for path in redrive_paths(sluice_binary, stack, function):
            redriven[(function, path["path"])] = path
    redrive_seconds = time.time() - t0
    expected = {
        ("avro-converter", "failure queue"): (2, 1),
        ("counter-mapper", "failure queue"): (1, 0),
        ("counter-mapper", "SNS delivery queue"): (0, 0),
        ("kinesis-archiver", "kept batches"): (1, 0),
        ("counter-aggregator", "failure queue"): (1, 0),
        ("crash-router", "DLQ"): (2, 1),
    }
    for key, (moved, skipped) in expected.items():
        path = redriven[key]
        assert path["failed_again"] == 0, (key, path)
        assert (path["redriven"], left_in_place(path)) == (moved, baseline.get(key, 0) + skipped), (key, path)
    assert redriven[("avro-converter", "failure queue")]["skipped_by_reason"].get(NOT_AN_EVENT, 0) >= 1
    assert redriven[("crash-router", "DLQ")]["skipped_by_reason"].get(NOT_AN_EVENT, 0) >= 1
    assert redriven[("kinesis-archiver", "kept batches")]["records"] == 5
    assert redriven[("kinesis-archiver", "kept batches")]["announcements_removed"] >= 1
    [jobs] = redrive_paths(sluice_binary, stack, "job-poller", expect=None)
    assert any(i["outcome"] == "skipped" and tag in i["detail"] for i in jobs["items"]), jobs

    # --- each item reached the normal output, once ---
    avro = keys_under(outputs["AvroOutputBucketName"], outputs["AvroOutputPrefix"], denied)
    mine = [k for k in avro if any(avro_name(key) in k for key in avro_keys)]
    assert avro_records(outputs, mine) == Counter(e["event_id"] for es in avro_events.values() for e in es)
    for counter, value in mapper_values.items():
        wait_until(lambda: aggregate_total(outputs, counter, mapper_date) == value, timeout=120, interval=2,
                   message=f"{counter} total after the mapper's redrive")
    assert aggregate_total(outputs, aggregated, aggregator_date) == 7, "the replayed range, summed once"
    archived = wait_until(lambda: (lines := archive_lines_with(outputs, poison, started)) and len(lines) >= 5 and lines,
                          timeout=60, interval=2, message="the kept batch archived")
    assert sorted(archived) == sorted(e.encode() for e in archiver_events), "each record once, byte for byte"
    routed = queue_bodies_taken(outputs["CrashProcessingQueueUrl"], set(crashes), timeout=60)
    assert routed == Counter({c: 1 for c in crashes}), routed

    # --- a second redrive finds nothing more to move ---
    for function in paths:
        for path in redrive_paths(sluice_binary, stack, function):
            key = (function, path["path"])
            assert (path["redriven"], path["failed_again"]) == (0, 0), (key, path)
            assert left_in_place(path) == baseline.get(key, 0) + expected[key][1], (key, path)
    assert len(archive_lines_with(outputs, poison, started)) == 5
    assert aggregate_total(outputs, aggregated, aggregator_date) == 7
    print(f"parked in {parked_after:.0f} s, redriven in {redrive_seconds:.0f} s, whole test {time.time() - started:.0f} s")


def test_backfill_reproduces_the_same_avro_bytes(sluice_binary, pipeline):
    outputs, stack = pipeline, pipeline["StackName"]
    tag = marker()
    s3 = client("s3")
    raw, out = outputs["AvroRawBucketName"], outputs["AvroOutputBucketName"]
    prefix = f"{outputs['AvroInputPrefix']}{tag}/"
    good = [player_event(i, 1_715_680_797_000 + i * 1000) for i in range(5)]  # 09:59:57 .. 10:00:01
    with_bad = [player_event(10 + i, 1_715_680_797_000) for i in range(4)]
    with_bad[2]["bitrate_kbps"] = "high"  # breaks the schema: rejected, the others convert
    for events, name in ((good, "a"), (with_bad, "b")):
        for i, e in enumerate(events):
            e["event_id"] = f"{tag}-{name}-{i}"
    inputs = {
        f"{prefix}a.json.snappy": framed_snappy(ndjson(good)),
        f"{prefix}b.json.snappy": raw_snappy(ndjson(with_bad)),
        f"{prefix}c.json.snappy": b"not snappy at all",
        f"{prefix}notes.txt": b"outside the notification filter",
    }
    for key, body in inputs.items():
        s3.put_object(Bucket=raw, Key=key, Body=body)

    def outputs_of_run():
        avro = [k for k in keys_under(out, outputs["AvroOutputPrefix"]) if any(avro_name(i) in k for i in inputs)]
        errors = keys_under(out, outputs["AvroErrorPrefix"], tag)
        return {k: s3.get_object(Bucket=out, Key=k)["Body"].read() for k in avro + errors}

    # Converted on upload: a (two hours) and b (one hour) in Avro; b's reject and c's copy and reason in errors/.
    first = wait_until(lambda: (o := outputs_of_run()) and len(o) == 6 and o, timeout=90, interval=2,
                       message="the uploads converted")
    for key in first:
        s3.delete_object(Bucket=out, Key=key)

    dry = sluice_json(sluice_binary, stack, "backfill", "avro-converter", f"s3://{raw}/{prefix}", "--dry-run")
    assert (dry["listed"], dry["outside_filter"], dry["objects"]) == (4, 1, 3), dry
    assert outputs_of_run() == {}, "a dry run converts nothing"

    t0 = time.time()
    report = sluice_json(sluice_binary, stack, "backfill", "avro-converter", f"s3://{raw}/{prefix}", "--concurrency", "3")
    seconds = time.time() - t0
    assert (report["objects"], report["converted"], report["inputs_rejected"], report["failed"]) == (3, 2, 1, 0), report
    assert (report["records_converted"], report["records_rejected"], report["avro_files"]) == (8, 1, 3), report
    again = outputs_of_run()
    assert again.keys() == first.keys()
    assert again == first, "the same Avro bytes, the same rejects"
    assert avro_records(outputs, [k for k in again if k.endswith(".avro")]) == Counter(
        e["event_id"] for e in good + with_bad if e is not with_bad[2]
    )
    code, _, err = run_sluice(sluice_binary, stack, "backfill", "avro-converter", f"s3://{raw}/{prefix}", "--since", "2099-01-01")
    assert code == NOT_FOUND and "outside --since/--until" in err, err
    print(f"backfill of 3 inputs: {seconds:.1f} s")


def test_replay_puts_the_archive_back_on_the_stream_resumably_and_the_archiver_writes_it_again(sluice_binary, pipeline):
    outputs, stack = pipeline, pipeline["StackName"]
    tag = marker()
    started = time.time()
    events = [json.dumps({"player_id": "p-42", "n": n, "run": tag, "note": "é \u2603"}, separators=(",", ":")) for n in range(12)]
    client("kinesis").put_records(
        StreamName=outputs["EventStreamName"], Records=[{"Data": e.encode(), "PartitionKey": "p-42"} for e in events]
    )
    original = wait_until(lambda: (lines := archive_lines_with(outputs, tag, started)) and len(lines) >= 12 and lines,
                          timeout=90, interval=2, message="the events archived")
    assert sorted(original) == sorted(e.encode() for e in events)
    bucket = outputs["ArchiveBucketName"]
    prefix = outputs["ArchiveLocation"].removeprefix(f"s3://{bucket}/")
    s3 = client("s3")
    holding = sorted(
        k for k in keys_under(bucket, prefix)
        if tag.encode() in bz2.decompress(s3.get_object(Bucket=bucket, Key=k)["Body"].read())
        and s3.head_object(Bucket=bucket, Key=k)["LastModified"].timestamp() >= started - 2
    )
    source = f"s3://{bucket}/{os.path.commonprefix(holding)}"
    lines_in_source = sum(
        len(bz2.decompress(s3.get_object(Bucket=bucket, Key=k)["Body"].read()).splitlines())
        for k in keys_under(bucket, os.path.commonprefix(holding))
    )

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = str(Path(tmp) / "replay.json")
        dry = sluice_json(sluice_binary, stack, "replay", "archive", source, "--dry-run", "--checkpoint", checkpoint)
        assert dry["events_put"] == lines_in_source and not Path(checkpoint).exists(), dry

        t0 = time.time()
        first = sluice_json(sluice_binary, stack, "replay", "archive", source, "--rate", "4/s", "--max", "6",
                            "--checkpoint", checkpoint, expect=INCOMPLETE)
        paced = time.time() - t0
        assert first["events_put"] == 6 and first["stopped_at"]["line"] == 6, first
        assert paced >= 1.0, f"6 records at 4/s take at least a second, took {paced:.2f} s"
        code, _, err = run_sluice(sluice_binary, stack, "replay", "archive", source, "--checkpoint", checkpoint)
        assert code == USAGE and "--resume continues it" in err, err

        code, text, _ = run_sluice(sluice_binary, stack, "replay", "archive", source, "--resume", "--checkpoint", checkpoint)
        assert code == OK and "resumed at" in text and "complete" in text, text
        rest = sluice_json(sluice_binary, stack, "replay", "archive", source, "--resume", "--checkpoint", checkpoint)
        assert rest["events_put"] == 0, "a finished replay puts nothing again"
        total = json.loads(Path(checkpoint).read_text())
        assert total["done"] and total["events_put"] == lines_in_source, total

    # The archiver writes every replayed event again: each twice in all (original + replay),
    # byte for byte, in objects of their own.
    both = wait_until(lambda: (lines := archive_lines_with(outputs, tag, started)) and len(lines) >= 24 and lines,
                      timeout=90, interval=2, message="the replayed events archived")
    assert Counter(both) == Counter({e.encode(): 2 for e in events}), "none lost, none put twice"
    print(f"replay of {lines_in_source} events (source {source}): whole test {time.time() - started:.0f} s")
