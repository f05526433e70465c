"""crash-router end to end: raw crashes put into the crash bucket of the deployed pipeline
(S3 -> notification queue -> the release zip via the SQS event source mapping) -> crash ids
read back from the processing and submitter queues; skips named in CloudWatch Logs; a
redelivered notification routed the same way; a send failure redelivered until the DLQ, then
redriven from the DLQ once the route is fixed."""

import json
import secrets
import time

import pytest
from conftest import client, drain_queue, log_lines, marker, wait_until

pytestmark = pytest.mark.timeout(300)

DAY = "20260314"  # key date; crash ids carry it as yymmdd
YYMMDD = DAY[2:]


def crash_id(throttle: str = "0", yymmdd: str = YYMMDD) -> str:
    h = secrets.token_hex(12)
    return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{h[15:19]}-{h[19:24]}{throttle}{yymmdd}"


def sample_bucket(crash: str) -> int:
    """The router's sampling bucket: FNV-1a 64 of the id, mod 100."""
    h = 0xCBF29CE484222325
    for b in crash.encode():
        h = ((h ^ b) * 0x100000001B3) % 2**64
    return h % 100


def ids_split(percent: int, sampled: int, unsampled: int) -> tuple[list[str], list[str]]:
    inside, outside = [], []
    while len(inside) < sampled or len(outside) < unsampled:
        c = crash_id()
        if sample_bucket(c) < percent:
            if len(inside) < sampled:
                inside.append(c)
        elif len(outside) < unsampled:
            outside.append(c)
    return inside, outside


def raw_key(crash: str, entropy: str | None = None, day: str = DAY, prefix: str = "v2/raw_crash/") -> str:
    return f"{prefix}{entropy or crash[:3]}/{day}/{crash}"


class Queue:
    """Everything read from one queue during the module, received and deleted as it comes."""

    def __init__(self, url: str):
        self.url = url
        self.bodies: list[str] = []

    def drain(self) -> list[str]:
        self.bodies.extend(drain_queue(self.url))
        return self.bodies

    def count(self, body: str) -> int:
        return self.drain().count(body)


@pytest.fixture(scope="module")
def crash(pipeline):
    out = {
        "bucket": pipeline["CrashBucketName"],
        "prefix": pipeline["CrashRawPrefix"],
        "function": pipeline["CrashRouterFunctionName"],
        "notifications": pipeline["CrashNotificationQueueUrl"],
        "dlq": pipeline["CrashNotificationDlqUrl"],
        "max_receives": int(pipeline["CrashNotificationMaxReceiveCount"]),
        "percent": int(pipeline["CrashSubmitterPercent"]),
        "processing": Queue(pipeline["CrashProcessingQueueUrl"]),
        "submitter": Queue(pipeline["CrashSubmitterQueueUrl"]),
    }
    assert out["prefix"] == "v2/raw_crash/"
    # Leftovers of earlier runs against a kept stack are not this run's output.
    out["processing"].drain().clear()
    out["submitter"].drain().clear()
    return out


def put_crash(crash, key: str) -> None:
    client("s3").put_object(Bucket=crash["bucket"], Key=key, Body=b'{"ProductName": "Firefox"}')


def mine(bodies: list[str], run: set[str]) -> list[str]:
    return sorted(b for b in bodies if b in run)


FUNCTIONS = (
    "IngestApi", "KinesisArchiver", "AvroConverter", "CrashRouter",
    "CounterMapper", "CounterAggregator", "CounterReporter", "JobPoller",
)


def reserved_concurrency(outputs) -> dict[str, int | None]:
    """Function -> its reserved concurrency (None: the account's unreserved pool)."""
    lam = client("lambda")
    return {
        f: lam.get_function_concurrency(FunctionName=outputs[f"{f}FunctionName"]).get("ReservedConcurrentExecutions")
        for f in FUNCTIONS
    }


def notification_mapping(outputs) -> dict:
    lam = client("lambda")
    queue_arn = client("sqs").get_queue_attributes(
        QueueUrl=outputs["CrashNotificationQueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    mappings = lam.list_event_source_mappings(
        FunctionName=outputs["CrashRouterFunctionName"], EventSourceArn=queue_arn
    )["EventSourceMappings"]
    assert len(mappings) == 1, mappings
    return mappings[0]


def test_concurrency_is_capped_on_the_mapping_and_reserved_only_when_asked(pipeline, crash):
    # The default stack reserves nothing (a reservation could exceed a new account's pool) ...
    assert reserved_concurrency(pipeline) == {f: None for f in FUNCTIONS}
    # ... but the SQS mapping never runs more than CrashRouterMaxConcurrency invocations, so a
    # flood of notifications waits on the queue instead of being received, throttled and
    # counted toward the DLQ; and a receive count of 5 leaves room for throttled receives.
    assert notification_mapping(pipeline)["ScalingConfig"] == {"MaximumConcurrency": 10}
    policy = client("sqs").get_queue_attributes(QueueUrl=crash["notifications"], AttributeNames=["RedrivePolicy"])
    assert json.loads(policy["Attributes"]["RedrivePolicy"])["maxReceiveCount"] == 5 == crash["max_receives"]


def test_routes_exactly_the_accepted_ids_and_the_sampled_share(crash):
    sampled, unsampled = ids_split(crash["percent"], 2, 3)
    encoded = crash_id()  # a key S3 percent-encodes in the notification
    deferred, malformed, wrong_prefix, mismatch = crash_id("1"), crash_id(), crash_id(), crash_id()
    accepted = sampled + unsampled + [encoded]
    keys = {c: raw_key(c) for c in sampled + unsampled}
    keys[encoded] = raw_key(encoded, entropy="0 +%é")
    rejected = {
        deferred: (raw_key(deferred), "deferred"),
        malformed: (raw_key(malformed).upper().replace("V2/RAW_CRASH/", "v2/raw_crash/"), "malformed_crash_id"),
        wrong_prefix: (raw_key(wrong_prefix, prefix="v1/raw_crash/"), "wrong_prefix"),
        mismatch: (raw_key(mismatch, day="20260315"), "date_mismatch"),
    }
    for key in list(keys.values()) + [k for k, _ in rejected.values()]:
        put_crash(crash, key)

    processing, submitter = crash["processing"], crash["submitter"]
    run = set(accepted) | set(rejected)
    wait_until(
        lambda: set(processing.drain()) >= set(accepted),
        timeout=90,
        message="every accepted id on the processing queue",
    )
    # Each rejected key was seen and skipped for its reason (so "nothing else" means something).
    for c, (key, reason) in rejected.items():
        wait_until(
            lambda: [line for line in log_lines(crash["function"], contains=key) if f'"reason":"{reason}"' in line],
            timeout=60,
            message=f"skip line for {key} with reason {reason}",
        )
    wait_until(lambda: set(submitter.drain()) >= {c for c in accepted if sample_bucket(c) < crash["percent"]}, timeout=30)

    assert mine(processing.drain(), run) == sorted(accepted)
    assert mine(submitter.drain(), run) == sorted(c for c in accepted if sample_bucket(c) < crash["percent"])
    assert set(sampled) <= set(submitter.bodies) and not set(unsampled) & set(submitter.bodies)
    # Nothing but this run's ids arrived on either queue.
    assert set(processing.bodies) <= run and set(submitter.bodies) <= run
    # The per-reason metrics are in the function's EMF lines.
    emf = " ".join(log_lines(crash["function"], contains='"CloudWatchMetrics"'))
    for metric in ("Skipped.wrong_prefix", "Skipped.date_mismatch", "Skipped.malformed_crash_id", "Deferred", "Accepted"):
        assert metric in emf, metric


def s3_notification(crash, key: str) -> str:
    """An S3 notification body as S3 puts it on the queue (key form-encoded)."""
    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "awsRegion": "us-east-1",
                    "eventTime": "2026-03-14T12:00:00.000Z",
                    "eventName": "ObjectCreated:Put",
                    "s3": {
                        "s3SchemaVersion": "1.0",
                        "configurationId": "raw-crash-uploads",
                        "bucket": {"name": crash["bucket"], "arn": f"arn:aws:s3:::{crash['bucket']}"},
                        "object": {"key": key, "size": 27, "eTag": "0b1c5e1f4e0f4d8a9c1b2a3d4e5f6a7b", "sequencer": "0065F2F1A0B1C2D3E4"},
                    },
                }
            ]
        }
    )


def test_redelivered_notification_routes_to_the_same_queues(crash):
    (inside,), (outside,) = ids_split(crash["percent"], 1, 1)
    sqs = client("sqs")
    processing, submitter = crash["processing"], crash["submitter"]
    for c in (inside, outside):
        body = s3_notification(crash, raw_key(c))
        sqs.send_message(QueueUrl=crash["notifications"], MessageBody=body)
        wait_until(lambda: processing.count(c) == 1, timeout=60, message=f"{c} routed once")
        sqs.send_message(QueueUrl=crash["notifications"], MessageBody=body)  # the same event again
        wait_until(lambda: processing.count(c) == 2, timeout=60, message=f"{c} routed again")
    wait_until(lambda: submitter.count(inside) == 2, timeout=30)
    # Let any stray third delivery show up before asserting nothing doubled beyond the redelivery.
    time.sleep(2)
    assert processing.count(inside) == 2 and processing.count(outside) == 2
    assert submitter.count(inside) == 2 and submitter.count(outside) == 0


@pytest.mark.timeout(420)
def test_a_route_to_a_missing_queue_redelivers_until_the_dlq_then_redrives(crash):
    lam, sqs = client("lambda"), client("sqs")
    name = crash["function"]
    original = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    missing = crash["processing"].url.rsplit("/", 1)[0] + f"/{marker()}-does-not-exist"
    broken = dict(original, EXTRA_ROUTES=f"{original['EXTRA_ROUTES']},100:{missing}")
    (c,) = ids_split(crash["percent"], 0, 1)[1]
    key = raw_key(c)
    dlq = Queue(crash["dlq"])
    processing = crash["processing"]

    lam.update_function_configuration(FunctionName=name, Environment={"Variables": broken})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    try:
        put_crash(crash, key)

        def in_dlq():
            got = sqs.receive_message(QueueUrl=dlq.url, MaxNumberOfMessages=10, VisibilityTimeout=30)
            for m in got.get("Messages", []):
                if c in m["Body"]:
                    return m
                sqs.change_message_visibility(QueueUrl=dlq.url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
            return None

        dead = wait_until(in_dlq, timeout=300, interval=2, message="the notification in the DLQ")
    finally:
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": original})
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)

    # The DLQ holds the original S3 notification, unchanged.
    record = json.loads(dead["Body"])["Records"][0]
    assert record["eventName"] == "ObjectCreated:Put" and record["s3"]["object"]["key"] == key
    # Redelivered: one failed attempt per receive, each logged with the queue error.
    failures = wait_until(
        lambda: (lines := [l for l in log_lines(name, contains=c) if "does-not-exist" in l and ("NonExistentQueue" in l or "QueueDoesNotExist" in l)])
        and len(lines) >= crash["max_receives"]
        and lines,
        timeout=60,
        message="one logged send failure per receive",
    )
    assert len(failures) == crash["max_receives"], failures
    assert all('"level":"ERROR"' in l for l in failures), failures[0]
    # Each attempt reached the processing queue before the missing one failed: at-least-once.
    assert processing.count(c) == crash["max_receives"]

    # Redrive: the same notification, back on the notification queue, now routes and is acknowledged.
    sqs.send_message(QueueUrl=crash["notifications"], MessageBody=dead["Body"])
    sqs.delete_message(QueueUrl=dlq.url, ReceiptHandle=dead["ReceiptHandle"])
    wait_until(lambda: processing.count(c) == crash["max_receives"] + 1, timeout=60, message="redriven notification routed")
    time.sleep(2)
    assert in_dlq() is None
