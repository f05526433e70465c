"""job-poller under injected faults (issue #11, part 1): five jobs, each started by a report
uploaded to the reports bucket (the real trigger, S3 -> Lambda), followed across several
self-invoked generations while the function's own AWS calls go through the fault proxy:
Lambda Invoke (the hand-over to the next generation) throttled with 429s, DynamoDB
PutItem/UpdateItem/GetItem on the jobs table throttled, failing with 500s and dropped,
SNS Publish throttled (40%) and failing, Secrets Manager (the API token, read at cold start)
throttled. Every S3 event is also delivered a second time while its job runs.

At the end every job has exactly one notification on the outcome queue with the outcome
its fake job produced (or, when a generation exhausted Lambda's async retries, its event
is in the function's on-failure queue with the error type), one job at the fake API,
one jobs-table item whose chain has one turn per generation, and nothing else arrives.

The stack is this module's own (the ``deploy`` fixture, with AwsEndpointUrl pointing at the
session's fault proxy): the job-poller needs parameters the shared ``faulty_pipeline``
does not set — the fake job API's URL and a short generation (6 s, 2 s of it kept back)
so that a 15 s job needs several generations.
"""

import json
import os
import threading
import time

import pytest
from conftest import failure_records, log_lines, marker, record_reliability, wait_until
from faultproxy import BAD_DAY, Rule, describe
from test_job_poller import PREFIX, Outcomes, chain_generations, deploy_job_stack, job_items, s3_event_for

TIMEOUT_SECONDS = 6
SAFETY_MARGIN_MS = 2000
MAX_GENERATIONS = 10
LEASE_GRACE_MS = 2000  # a dead generation's turn can be taken over 2 s after its deadline
# word in the object key -> (seconds the fake job runs, outcome it ends in)
JOBS = {
    "quick": (1.5, "SUCCEEDED"),
    "medium": (7, "SUCCEEDED"),
    "long": (12, "SUCCEEDED"),
    "longer": (16, "SUCCEEDED"),
    "fail": (5, "FAILED"),
}
COMMAND = "SLUICE_KEEP_LOCALSTACK=1 python -m pytest tests/e2e/test_faults_job_poller.py -q"


def fault_rules() -> list[Rule]:
    common = BAD_DAY
    # A few faults forced early on the calls the test counts, so that every run meets some.
    forced = ("throttle", "pass", "error500")
    return [
        # A lost Invoke answer makes the SDK invoke again: a duplicated generation.
        Rule("lambda", "Invoke", **common, drop_response=0.02, first=("throttle",)),
        Rule("dynamodb", "PutItem", **common, drop_response=0.02),
        Rule("dynamodb", "UpdateItem", **common, drop_response=0.02, first=forced),
        Rule("dynamodb", "GetItem", **common),
        # No lost answers on Publish: SNS has no de-duplication for a standard topic, so a
        # repeated Publish is a second notification (see "job-poller" under "Per path" in docs/RELIABILITY.md).
        # Only one Publish per job: a higher rate, so that five jobs surely meet some.
        Rule("sns", "Publish", throttle=0.4, error500=0.1, drop=0.02, latency=(0.0, 0.02), first=forced),
        Rule("secretsmanager", "GetSecretValue", throttle=0.2, error500=0.05),
    ]


@pytest.fixture(scope="module")
def stack(deploy, fake_api, fault_proxy, aws):
    name = f"{os.environ.get('SLUICE_FAULT_STACK') or 'sluice-faults'}-jobs"
    return deploy_job_stack(
        deploy, fake_api, aws, TIMEOUT_SECONDS, SAFETY_MARGIN_MS, MAX_GENERATIONS,
        stack=name, AwsEndpointUrl=fault_proxy.url, JobPollerLeaseGraceMs=str(LEASE_GRACE_MS),
    )


# Log phrases run_jobs counts: failed invocations (retried by Lambda), duplicate
# generations refused, notification records handed to a fresh invocation.
LOGGED = ("invocation failed", "turn already taken", "handed to a record-notification invocation")


def logged(function: str) -> dict[str, int]:
    """How many of the function's log lines contain each of LOGGED (one read of the log)."""
    lines = log_lines(function)
    return {phrase: sum(phrase in line for line in lines) for phrase in LOGGED}


def failed_key(record: dict, key_of_source: dict[str, str]) -> str | None:
    """The report key an on-failure record belongs to (an S3 event or a continuation)."""
    payload = record.get("requestPayload") or {}
    if payload.get("kind") == "job-poller/continue":
        return key_of_source.get(payload.get("source_id"))
    for r in payload.get("Records", []):
        return r.get("s3", {}).get("object", {}).get("key")
    return None


def run_jobs(stack, aws, fake_api, faults, rules: list[Rule], path: str, selector: str,
             targets: list[tuple[str, str]]):
    """Runs JOBS with `rules` on, records the row as `path`, and asserts one outcome per job."""
    sqs = aws("sqs")
    outcomes = Outcomes(sqs, stack["JobOutcomeQueueUrl"])
    outcomes.drain()
    failure_records(stack["JobPollerFailureQueueUrl"])
    function = stack["JobPollerFunctionName"]
    logged_before = logged(function)
    faults.set_rules(rules)
    started = time.monotonic()

    keys = {}
    for word, (seconds, _) in JOBS.items():
        key = f"{PREFIX}{path}/{word}/{marker()}.csv"
        fake_api.durations.append((f"/{word}/", seconds))
        aws("s3").put_object(Bucket=stack["JobReportsBucketName"], Key=key, Body=b"region,amount\nEU,42\n")
        keys[word] = key

    # Each S3 event delivered once more (asynchronously, as S3 may) while its job runs.
    def items_by_key():
        found = {}
        for word, key in keys.items():
            items = job_items(aws, stack, key)
            if items:
                found[word] = items[0]
        return found

    redelivered = wait_until(lambda: (f := items_by_key()) and len(f) == len(keys) and f, timeout=90, interval=0.5,
                             message="a jobs-table item for every report")
    for item in redelivered.values():
        response = aws("lambda").invoke(FunctionName=stack["JobPollerFunctionName"], InvocationType="Event",
                                        Payload=json.dumps(s3_event_for(item)).encode())
        assert response["StatusCode"] == 202

    failures: list[dict] = []
    key_of_source = {item["source_id"]: item["object_key"] for item in redelivered.values()}

    def settled():
        failures.extend(failure_records(stack["JobPollerFailureQueueUrl"]))
        failed = {failed_key(r, key_of_source) for r in failures}
        return all(outcomes.for_key(key) or key in failed for key in keys.values())

    wait_until(settled, timeout=240, interval=1, message="a notification (or an on-failure record) for every job")
    elapsed = time.monotonic() - started
    # Two more generations' time: nothing else may arrive.
    end = time.monotonic() + 2 * TIMEOUT_SECONDS
    while time.monotonic() < end:
        outcomes.drain()
        time.sleep(1)
    failures.extend(failure_records(stack["JobPollerFailureQueueUrl"]))
    injected = faults.summary()
    faults.clear()

    failed = {failed_key(r, key_of_source): r for r in failures}
    rows = {}
    for word, key in keys.items():
        notes = outcomes.for_key(key)
        items = job_items(aws, stack, key)
        job_ids = {s["idempotency_key"] for s in fake_api.starts_for(key)}
        rows[word] = {"notes": notes, "items": items, "jobs": len(job_ids), "failed": failed.get(key)}
    notified = [w for w, r in rows.items() if len(r["notes"]) >= 1]
    in_dlq = [w for w, r in rows.items() if not r["notes"] and r["failed"]]
    lost = [w for w, r in rows.items() if not r["notes"] and not r["failed"]]
    duplicated = sum(max(0, len(r["notes"]) - 1) for r in rows.values())
    logged_after = logged(function)
    retried, duplicate_turns, records_handed_off = (logged_after[p] - logged_before[p] for p in LOGGED)
    record_reliability(
        path,
        workload=f"{len(JOBS)} jobs ({', '.join(f'{s:g} s' for s, _ in JOBS.values())}; one ends FAILED), "
        f"{TIMEOUT_SECONDS} s generations, every S3 event delivered twice",
        faults=describe(rules),
        records_in=len(JOBS),
        records_out=len(notified),
        in_dlq=len(in_dlq),
        lost=len(lost),
        duplicated=duplicated,
        generations={w: r["notes"][0]["generations"] for w, r in rows.items() if r["notes"]},
        failed_invocations_retried=retried,
        duplicate_generations_refused=duplicate_turns,
        notification_records_handed_off=records_handed_off,
        dlq_reasons=sorted({(r.get("responsePayload") or {}).get("errorType", "") for r in failures}),
        seconds=round(elapsed, 1),
        injected=injected,
        command=f"{COMMAND} -k {selector}",
    )

    # Faults really happened on the targeted calls (each rule forces a few early on; taken
    # together, since a run has only a few Invoke and Publish calls).
    assert sum(n for (s, o, out), n in faults_stats(injected) if (s, o) in targets and out != "pass") >= 5, injected
    assert any(out != "pass" for (s, o, out), _ in faults_stats(injected) if (s, o) == targets[0]), injected
    assert lost == [], {w: rows[w] for w in lost}
    assert duplicated == 0, {w: r["notes"] for w, r in rows.items() if len(r["notes"]) > 1}
    for word, row in rows.items():
        assert len(row["items"]) == 1, (word, row["items"])
        assert row["jobs"] == 1, f"{word}: {row['jobs']} jobs started at the API"
        if row["notes"]:
            note, item = row["notes"][0], row["items"][0]
            assert note["outcome"] == JOBS[word][1], (word, note)
            assert item["job_state"] == JOBS[word][1] and "notified_at" in item, (
                word, item, log_lines(function, contains=item["source_id"])[-30:])
            generations = chain_generations(item)
            assert generations == list(range(len(generations))), f"{word}: one turn per generation: {item['chain']}"
            assert note["generations"] == len(generations), (word, note, item["chain"])
        else:
            reason = (row["failed"].get("responsePayload") or {}).get("errorType")
            assert reason, f"{word}: on-failure record without an error type: {row['failed']}"


@pytest.mark.timeout(300)
def test_five_jobs_under_faults_end_with_one_notification_each(stack, aws, fake_api, faults):
    run_jobs(stack, aws, fake_api, faults, fault_rules(), "job-poller", "one_notification",
             targets=[("dynamodb", "UpdateItem"), ("lambda", "Invoke"), ("sns", "Publish")])


@pytest.mark.timeout(300)
def test_lost_answers_neither_lose_nor_repeat_a_job(stack, aws, fake_api, faults):
    """A third of the jobs table writes and of the hand-over invokes are applied by
    LocalStack but their answers lost: the SDK sends them again. Every retried write must
    find its own earlier effect (the claim, the start, the turn, the outcome, the
    notification claim) and carry on; a repeated invoke is a duplicated generation that
    must lose its claim."""
    lost = ("drop_response", "pass", "drop_response", "pass", "drop_response")
    rules = [
        Rule("dynamodb", "PutItem", drop_response=0.3),
        Rule("dynamodb", "UpdateItem", drop_response=0.3, first=lost),
        Rule("lambda", "Invoke", drop_response=0.3, first=("drop_response",)),
    ]
    run_jobs(stack, aws, fake_api, faults, rules, "job-poller-lost-answers", "lost_answers",
             targets=[("dynamodb", "UpdateItem"), ("lambda", "Invoke")])


@pytest.mark.timeout(180)
def test_a_notification_its_publisher_cannot_record_is_recorded_by_a_handed_over_invocation(
        stack, aws, fake_api, faults):
    """Every write of `notified_at` fails (500) until the publisher hands the record over
    (its Lambda Invoke carries a ``job-poller/record-notification`` event); from then on
    writes pass. The job is notified once, the publisher's invocation does not fail (a
    retry would publish again), and the handed-over invocation records the notification."""
    handed_over = threading.Event()
    mark = marker()  # in this job's key, so in every request about it

    def sees_handover(method: str, path: str, body: bytes) -> bool:
        if b"job-poller/record-notification" in body and mark.encode() in body:
            handed_over.set()
        return False  # the Invoke itself passes

    def records_before_handover(method: str, path: str, body: bytes) -> bool:
        return b"notification_id" in body and mark.encode() in body and not handed_over.is_set()

    function = stack["JobPollerFunctionName"]
    outcomes = Outcomes(aws("sqs"), stack["JobOutcomeQueueUrl"])
    outcomes.drain()
    failures = failure_records(stack["JobPollerFailureQueueUrl"])
    faults.set_rules([
        Rule("lambda", "Invoke", when=sees_handover),
        Rule("dynamodb", "UpdateItem", error500=1.0, when=records_before_handover),
    ])
    key = f"{PREFIX}job-poller-record/recorded/{mark}.csv"
    fake_api.durations.append(("/recorded/", 1))
    aws("s3").put_object(Bucket=stack["JobReportsBucketName"], Key=key, Body=b"region,amount\nEU,42\n")

    item = wait_until(lambda: (found := job_items(aws, stack, key)) and "notified_at" in found[0] and found[0],
                      timeout=90, interval=1, message="notified_at recorded")
    # Two more generations' time: nothing else may arrive.
    time.sleep(2 * TIMEOUT_SECONDS)
    notes = outcomes.for_key(key)
    injected = faults.summary()
    faults.clear()
    lines = log_lines(function, contains=item["source_id"])

    assert handed_over.is_set(), lines
    assert injected.get("dynamodb.UpdateItem error500", 0) >= 1, injected
    assert len(notes) == 1, notes
    assert notes[0]["outcome"] == "SUCCEEDED" and item["job_state"] == "SUCCEEDED", (notes, item)
    assert item["notification_id"], item
    assert any("handed to a record-notification invocation" in line for line in lines), lines
    assert any("recorded by a record-notification invocation" in line for line in lines), lines
    assert not any("invocation failed" in line for line in lines), lines
    failures += failure_records(stack["JobPollerFailureQueueUrl"])
    assert not [r for r in failures if mark in json.dumps(r)], failures


@pytest.mark.timeout(300)
def test_a_generation_given_up_on_is_redriven_from_the_failure_queue_and_takes_the_job_over(
        stack, aws, fake_api, faults):
    """Every hand-over of one job to its next generation is refused (AccessDenied) until
    the invocation has gone through Lambda's retries and its event is in the on-failure
    queue; then the test redrives it as an operator would (its ``requestPayload`` invoked
    again, so a new request id). The dead invocation still holds the turn; once its lease
    ends (its deadline plus ``JobPollerLeaseGraceMs``) the redriven event takes the job
    over as the next generation and finishes it: one notification, one job at the API."""
    mark = marker()
    key = f"{PREFIX}job-poller-redrive/orphan/{mark}.csv"
    function = stack["JobPollerFunctionName"]
    outcomes = Outcomes(aws("sqs"), stack["JobOutcomeQueueUrl"])
    outcomes.drain()
    failure_records(stack["JobPollerFailureQueueUrl"])

    def hand_over_of_this_job(method: str, path: str, body: bytes) -> bool:
        return b"job-poller/continue" in body and mark.encode() in body

    faults.set_rules([Rule("lambda", "Invoke", deny=1.0, when=hand_over_of_this_job)])
    fake_api.durations.append(("/orphan/", 40))  # outlasts the three refused attempts
    aws("s3").put_object(Bucket=stack["JobReportsBucketName"], Key=key, Body=b"region,amount\nEU,42\n")

    def given_up():
        return [r for r in failure_records(stack["JobPollerFailureQueueUrl"]) if mark in json.dumps(r)]

    records = wait_until(given_up, timeout=120, interval=1, message="the generation's event in the failure queue")
    denied = faults.summary().get("lambda.Invoke deny", 0)
    faults.clear()
    assert len(records) == 1 and denied >= 3, (records, denied)
    assert records[0]["requestContext"]["condition"] == "RetriesExhausted", records[0]
    stuck = job_items(aws, stack, key)[0]
    assert stuck["job_state"] == "RUNNING" and not outcomes.for_key(key), stuck
    dead_owner = stuck["turn_owner"]

    # An operator's redrive: the same event, a new invocation (request id). Sent once the
    # lease has ended; before that the holder may still be alive and the event is refused.
    wait_until(lambda: time.time() * 1000 > int(stuck["turn_expires_at"]) + 500, timeout=120, interval=0.5)
    response = aws("lambda").invoke(FunctionName=function, InvocationType="Event",
                                    Payload=json.dumps(records[0]["requestPayload"]).encode())
    assert response["StatusCode"] == 202

    note = outcomes.wait_for(key, timeout=90)
    assert note["outcome"] == "SUCCEEDED", note
    time.sleep(2 * TIMEOUT_SECONDS)
    assert len(outcomes.for_key(key)) == 1, "notified once"
    item = job_items(aws, stack, key)[0]
    assert item["job_state"] == "SUCCEEDED" and "notified_at" in item, item
    chain = item["chain"]
    assert chain_generations(item) == list(range(len(chain))), chain
    assert chain[-1]["request_id"] != dead_owner, chain
    assert note["generations"] == len(chain), (note, chain)
    assert len({s["idempotency_key"] for s in fake_api.starts_for(key)}) == 1, "one job at the API"
    lines = log_lines(function, contains=item["source_id"])
    assert any("took the job over" in line for line in lines), lines[-20:]


def faults_stats(summary: dict[str, int]):
    """(service, operation, outcome), n from a ``proxy.summary()``."""
    for name, n in summary.items():
        call, outcome = name.split(" ")
        service, operation = call.split(".", 1)
        yield (service, operation, outcome), n
