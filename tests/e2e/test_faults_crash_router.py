"""crash-router under injected faults, end to end: raw crashes put into the crash bucket of
``faulty_pipeline`` (the real trigger: S3 notification -> notification queue -> the release zip
through the SQS event source mapping) while the fault proxy throttles, fails, drops, loses the
answers of, delays and partially fails the function's SendMessageBatch calls. Afterwards every
accepted crash id is on the processing queue (and the sampled ones on the submitter queue) at
least once, or its notification is in the DLQ; skipped keys are on no queue; unreadable messages
reach the DLQ after the configured receives without holding up the crashes batched with them.

Duplicates are measured, not forbidden: SQS standard queues and this path are at-least-once. A
SendMessageBatch whose response is lost after SQS stored the messages is resent whole, and a
notification redelivered after a failure is routed again. The test asserts that every duplicate
is explained by one of those two causes and records the count.

Sizes: ``SLUICE_FAULT_SCALE=full`` routes the issue's 1000 crash uploads; the default (CI) 300
(LocalStack's event source mapping invokes about one batch of 10 per 1-2 s). Both add deferred,
malformed and foreign keys."""

import json
import os
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import FAULT_SEED, FAULT_STACK_RESERVATIONS, client, log_lines, marker, record_reliability, wait_until
from faultproxy import Rule
from test_crash_router import FUNCTIONS, notification_mapping, reserved_concurrency
from test_crash_router import Queue as RoutedQueue
from test_crash_router import crash_id, ids_split, raw_key, sample_bucket

pytestmark = pytest.mark.timeout(600)

FULL = os.environ.get("SLUICE_FAULT_SCALE") == "full"
ACCEPTED = 1000 if FULL else 300
DEFERRED, MALFORMED, FOREIGN = 20, 10, 10
POISON = 2
MAX_ENTRIES = 10  # SendMessageBatch entries per call

SEND_FAULTS = dict(
    throttle=0.20, error500=0.05, drop=0.02, drop_response=0.02, partial=0.02, latency=(0.0, 0.05)
)
# Each kind of fault the assertions below count is forced once early on (between passes), so a
# run shows all of them whatever the dice do; the rates then apply to the rest.
FORCED = ("throttle", "pass", "error500", "pass", "drop", "pass", "drop_response", "pass", "partial")
RULES = [
    Rule("sqs", "SendMessageBatch", **SEND_FAULTS, first=FORCED),
    Rule("*", "*", throttle=0.20, error500=0.05),
]
FAULTS = (
    "SQS SendMessageBatch: 20% ThrottlingException, 5% 500 InternalError, 2% connection dropped before "
    "the call, 2% response lost after SQS stored the batch, 2% of entries failed inside a successful "
    "response, 0-50 ms latency, and each of these forced once in the first 9 calls; any other call: "
    "20% throttle, 5% 500"
)


class Queue(RoutedQueue):
    """Everything read from one queue during a test, received and deleted as it comes."""

    def in_flight(self) -> int:
        attributes = client("sqs").get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())


@pytest.fixture(scope="module")
def crash(faulty_pipeline, fault_proxy):
    out = {
        "bucket": faulty_pipeline["CrashBucketName"],
        "function": faulty_pipeline["CrashRouterFunctionName"],
        "notifications": Queue(faulty_pipeline["CrashNotificationQueueUrl"]),
        "dlq": Queue(faulty_pipeline["CrashNotificationDlqUrl"]),
        "max_receives": int(faulty_pipeline["CrashNotificationMaxReceiveCount"]),
        "percent": int(faulty_pipeline["CrashSubmitterPercent"]),
        "processing": Queue(faulty_pipeline["CrashProcessingQueueUrl"]),
        "submitter": Queue(faulty_pipeline["CrashSubmitterQueueUrl"]),
    }
    # Leftovers of earlier runs against a kept stack are not this run's output.
    for name in ("processing", "submitter", "dlq"):
        out[name].drain().clear()
    yield out
    fault_proxy.clear()


def put_all(crash, keys) -> None:
    s3 = client("s3")
    body = b'{"ProductName": "Firefox"}'
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=crash["bucket"], Key=key, Body=body), keys))


def dlq_crash_ids(bodies, run) -> set[str]:
    """Crash ids of this run whose notification is in the DLQ."""
    ids = set()
    for body in bodies:
        try:
            records = json.loads(body).get("Records", [])
        except (ValueError, AttributeError):
            continue
        for record in records:
            crash = record.get("s3", {}).get("object", {}).get("key", "").rsplit("/", 1)[-1]
            if crash in run:
                ids.add(crash)
    return ids


NOT_SENT = re.compile(r"crash id ([0-9a-f-]{36}) not sent to queue")


def test_the_reservations_an_operator_sets_are_applied(faulty_pipeline):
    """This stack is deployed with ReservedConcurrency parameters (conftest.py); each one is
    the function's reservation, the rest keep the unreserved pool, and the SQS mapping's
    MaximumConcurrency stays below crash-router's reservation."""
    want = {f: None for f in FUNCTIONS}
    for name, value in FAULT_STACK_RESERVATIONS.items():
        want[name.removesuffix("ReservedConcurrency")] = int(value)
    assert reserved_concurrency(faulty_pipeline) == want
    maximum = notification_mapping(faulty_pipeline)["ScalingConfig"]["MaximumConcurrency"]
    assert maximum <= want["CrashRouter"]


def test_every_accepted_crash_is_queued_or_in_the_dlq_under_sqs_faults(crash, fault_proxy):
    m = marker()
    accepted = [crash_id() for _ in range(ACCEPTED)]
    deferred = [crash_id("1") for _ in range(DEFERRED)]
    malformed = [crash_id() for _ in range(MALFORMED)]
    foreign = [crash_id() for _ in range(FOREIGN)]
    keys = [raw_key(c) for c in accepted + deferred]
    keys += [raw_key(c).replace(c, c.upper()) for c in malformed]  # malformed_crash_id
    keys += [raw_key(c, prefix=f"v1/{m}/") for c in foreign]  # wrong_prefix
    sampled = {c for c in accepted if sample_bucket(c) < crash["percent"]}
    skipped = set(deferred) | set(malformed) | set(foreign)
    run = set(accepted) | skipped
    poison = [f"not an S3 notification {m} #{i}" for i in range(POISON)]
    processing, submitter, dlq = crash["processing"], crash["submitter"], crash["dlq"]
    started = time.monotonic()

    fault_proxy.set_rules(RULES)
    try:
        # The poison goes first, so it is batched with the crashes that follow it.
        for body in poison:
            client("sqs").send_message(QueueUrl=crash["notifications"].url, MessageBody=body)
        put_all(crash, keys)

        def routed():
            dead = dlq_crash_ids(dlq.drain(), run)
            on_processing = set(processing.drain())
            on_submitter = set(submitter.drain())
            return (
                set(accepted) - dead <= on_processing
                and sampled - dead <= on_submitter
                and all(p in dlq.bodies for p in poison)
            )

        wait_until(routed, timeout=420, interval=2, message="every accepted id routed and the poison in the DLQ")
        # Quiescent: no notification left or in flight (a redelivery would still be pending).
        wait_until(lambda: crash["notifications"].in_flight() == 0, timeout=120, interval=2, message="notification queue empty")
        settled_at = time.monotonic() - started
        injected = fault_proxy.summary()
        stats = dict(fault_proxy.stats)
    finally:
        fault_proxy.clear()
    processing.drain(), submitter.drain(), dlq.drain()

    # The proxy really hurt the function's sends.
    for outcome in ("throttle", "error500", "partial_entries"):
        assert stats.get(("sqs", "SendMessageBatch", outcome), 0) > 0, (outcome, injected)
    lost_responses = stats.get(("sqs", "SendMessageBatch", "drop_response"), 0)
    assert stats.get(("sqs", "SendMessageBatch", "drop"), 0) > 0 and lost_responses > 0, injected

    on_processing = Counter(b for b in processing.bodies if b in run)
    on_submitter = Counter(b for b in submitter.bodies if b in run)
    dead = dlq_crash_ids(dlq.bodies, run)
    # Nothing silently missing: every accepted id reached each of its queues, or is in the DLQ.
    lost = sorted((set(accepted) - set(on_processing) - dead) | (sampled - set(on_submitter) - dead))
    assert not lost, f"{len(lost)} crash ids lost: {lost[:5]}"
    # Nothing extra: skipped keys on no queue, unsampled ids not on the submitter queue.
    assert not skipped & (set(on_processing) | set(on_submitter))
    assert not set(on_submitter) - sampled
    # The poison is in the DLQ unchanged, after the configured receives, with its reason logged.
    for body in poison:
        assert dlq.bodies.count(body) == 1, body
    unreadable = [l for l in log_lines(crash["function"], contains=m) if "is not a readable S3 notification" in l]
    assert len(unreadable) == POISON * crash["max_receives"], unreadable
    assert all('"level":"ERROR"' in l and '"permanent":true' in l for l in unreadable)
    # Skips are logged with their reasons.
    logged = " ".join(log_lines(crash["function"], contains='"reason":'))
    for c, reason in [(deferred[0], "deferred"), (malformed[0].upper(), "malformed_crash_id"), (foreign[0], "wrong_prefix")]:
        assert c in logged and f'"reason":"{reason}"' in logged, (c, reason)

    # Duplicates: each must come from a lost SendMessageBatch response (the whole batch, up to
    # MAX_ENTRIES ids, resent) or from a notification redelivered after a logged send failure.
    duplicated = sum(n - 1 for n in on_processing.values()) + sum(n - 1 for n in on_submitter.values())
    not_sent = Counter(
        found.group(1)
        for line in log_lines(crash["function"], contains="not sent to queue")
        if (found := NOT_SENT.search(line)) and found.group(1) in run
    )
    redelivered_ids = len(not_sent)
    assert duplicated <= MAX_ENTRIES * lost_responses + 2 * sum(not_sent.values()), (
        duplicated,
        lost_responses,
        not_sent,
    )

    records_in = len(run)
    records_out = len(set(on_processing))
    record_reliability(
        "crash-router",
        workload=(
            f"{ACCEPTED} accepted crash uploads ({len(sampled)} sampled to the submitter queue) + "
            f"{DEFERRED} deferred, {MALFORMED} malformed and {FOREIGN} wrong-prefix keys put into the crash "
            f"bucket (S3 -> notification queue -> event source mapping, batch 10) + {POISON} unreadable "
            f"messages on the notification queue"
        ),
        faults=FAULTS,
        records_in=records_in,
        records_out=records_out,
        submitter_out=len(set(on_submitter)),
        skipped_by_design=len(skipped),
        in_dlq=len(dead) + POISON,
        lost=len(lost),
        duplicated=duplicated,
        duplicated_processing=sum(n - 1 for n in on_processing.values()),
        duplicated_submitter=sum(n - 1 for n in on_submitter.values()),
        lost_responses=lost_responses,
        notifications_redelivered_after_send_failure=redelivered_ids,
        seconds_to_settle=round(settled_at, 1),
        injected=injected,
        command=(
            f"SLUICE_FAULT_SEED={FAULT_SEED}{' SLUICE_FAULT_SCALE=full' if FULL else ''} "
            "python -m pytest tests/e2e/test_faults_crash_router.py"
        ),
    )


def test_a_notification_delivered_again_is_routed_again_to_the_same_queues(crash, fault_proxy):
    """Duplicate delivery under faults: S3 notifies again for the same raw crash (put again). The
    router is at-least-once, not idempotent: the id is routed again, to the same queues (sampling
    depends only on the crash id) — two copies on each queue it routes to, never a third."""
    inside, outside = ids_split(crash["percent"], 2, 8)
    ids, sampled = inside + outside, set(inside)
    processing, submitter = crash["processing"], crash["submitter"]
    processing.drain().clear(), submitter.drain().clear()
    fault_proxy.set_rules(RULES)
    try:
        keys = [raw_key(c) for c in ids]
        put_all(crash, keys)
        wait_until(lambda: set(processing.drain()) >= set(ids), timeout=120, interval=1, message="routed once")
        put_all(crash, keys)  # the same objects again: S3 notifies again
        wait_until(
            lambda: all(processing.drain().count(c) >= 2 for c in ids)
            and all(submitter.drain().count(c) >= 2 for c in sampled),
            timeout=120,
            interval=1,
            message="routed twice",
        )
        wait_until(lambda: crash["notifications"].in_flight() == 0, timeout=120, interval=2)
        lost_responses = fault_proxy.stats[("sqs", "SendMessageBatch", "drop_response")]
    finally:
        fault_proxy.clear()
    processing.drain(), submitter.drain()
    extra = sum(max(0, processing.bodies.count(c) - 2) for c in ids) + sum(
        max(0, submitter.bodies.count(c) - 2) for c in sampled
    )
    assert extra <= MAX_ENTRIES * lost_responses, (extra, lost_responses)
    assert not (set(submitter.bodies) & set(ids)) - sampled
