"""job-poller end to end: S3 put -> job started on a fake job API -> followed across
several self-invoked generations -> exactly one SNS notification (read from the
outcome queue), with the chain recorded in the jobs table.

The fake job API (tests/e2e/fakejobapi.py, fixture ``fake_api``) is a Python http.server
on 127.0.0.1; the function reaches it because the host executor runs the release bootstrap as a local
process. Its base URL is the stack parameter JobApiBaseUrl, its bearer token the
secret the stack generated. Each job's duration is chosen by a word in its object key.

The stack is deployed with a short function timeout (4 s, 1 s of it kept back as the
safety margin) so that a job of ~10 s needs several generations, and a budget of 18
generations (past the 16 Lambda's recursion detection lets a chain reach without
``RecursiveLoop: Allow``) so that a very long job runs out of its own budget. It
subscribes a person too (AlertEmail): LocalStack hands SNS email to its SES store, where the test reads it. AlertHttpsEndpoint is
not deployed here: LocalStack's AWS::SNS::Subscription records an unconfirmed http(s)
subscription as "pending confirmation" and then cannot delete it, so the stack would not delete.
"""

import json
import time
import urllib.parse
import urllib.request

import pytest
from boto3.dynamodb.types import TypeDeserializer

from conftest import ENDPOINT, log_lines, marker, wait_until

TIMEOUT_SECONDS = 4
MAX_GENERATIONS = 18  # past the 16 invocations Lambda's recursion detection allows without RecursiveLoop: Allow
PREFIX = "reports/"
ALERT_EMAIL = f"sluice-ops+{marker()}@example.com"
# The outcome JSON as SQS subscribers have always received it: these fields, in this order.
NOTIFICATION_FIELDS = [
    "job_id", "source", "source_id", "outcome", "detail", "duration_ms",
    "generations", "started_at_ms", "finished_at_ms",
]


# --- fixtures and helpers --------------------------------------------------


def deploy_job_stack(deploy, fake_api, aws, timeout_seconds: int, safety_margin_ms: int, max_generations: int, **more):
    """The pipeline with job-poller pointed at ``fake_api`` (which learns the stack's token),
    polling every 0.3-0.6 s; ``more``: further stack parameters (or ``stack=`` its name)."""
    outputs = deploy(
        "infra/pipeline.yaml",
        JobApiBaseUrl=fake_api.base_url,
        JobReportPrefix=PREFIX,
        JobPollerTimeoutSeconds=str(timeout_seconds),
        JobPollerSafetyMarginMs=str(safety_margin_ms),
        JobPollInitialMs="300",
        JobPollMaxMs="600",
        JobPollerMaxGenerations=str(max_generations),
        **more,
    )
    secret = aws("secretsmanager").get_secret_value(SecretId=outputs["JobApiTokenSecretArn"])
    fake_api.token = secret["SecretString"]
    return outputs


@pytest.fixture(scope="module")
def stack(deploy, fake_api, aws):
    return deploy_job_stack(
        deploy, fake_api, aws, TIMEOUT_SECONDS, 1000, MAX_GENERATIONS,
        AlertEmail=ALERT_EMAIL,
    )


class Outcomes:
    """Notifications from the outcome queue, kept per object key across tests."""

    def __init__(self, sqs, queue_url):
        self.sqs, self.queue_url = sqs, queue_url
        self.by_key: dict[str, list[dict]] = {}
        self.bodies: dict[str, list[str]] = {}

    def drain(self):
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            if not batch:
                return
            for message in batch:
                body = json.loads(message["Body"])
                self.by_key.setdefault(body["source"]["key"], []).append(body)
                self.bodies.setdefault(body["source"]["key"], []).append(message["Body"])
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def for_key(self, key: str) -> list[dict]:
        self.drain()
        return self.by_key.get(key, [])

    def wait_for(self, key: str, timeout: float) -> dict:
        found = wait_until(lambda: self.for_key(key), timeout=timeout, interval=0.5, message=f"notification for {key}")
        return found[0]


@pytest.fixture(scope="module")
def outcomes(stack, aws):
    return Outcomes(aws("sqs"), stack["JobOutcomeQueueUrl"])


def job_items(aws, stack, key: str) -> list[dict]:
    deserialize = TypeDeserializer().deserialize
    pages = aws("dynamodb").get_paginator("scan").paginate(
        TableName=stack["JobsTableName"],
        FilterExpression="object_key = :k",
        ExpressionAttributeValues={":k": {"S": key}},
        ConsistentRead=True,
    )
    return [{k: deserialize(v) for k, v in item.items()} for page in pages for item in page["Items"]]


def one_item(aws, stack, key: str) -> dict:
    items = job_items(aws, stack, key)
    assert len(items) == 1, items
    return items[0]


def chain_generations(item: dict) -> list[int]:
    return [int(link["generation"]) for link in item.get("chain", [])]


def put_report(aws, stack, fake_api, word: str, seconds: float) -> str:
    key = f"{PREFIX}{word}/{marker()}.csv"
    fake_api.durations.append((word, seconds))
    aws("s3").put_object(Bucket=stack["JobReportsBucketName"], Key=key, Body=b"region,amount\nEU,42\n")
    return key


def s3_event_for(item: dict) -> dict:
    """The S3 notification for the item's object version, as S3 would deliver it again."""
    obj = {"key": item["object_key"].replace(" ", "+"), "size": 20, "eTag": item.get("etag", "")}
    if "sequencer" in item:
        obj["sequencer"] = item["sequencer"]
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-21T06:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": item["bucket"], "arn": f"arn:aws:s3:::{item['bucket']}"},
                    "object": obj,
                },
            }
        ]
    }


def invoke_sync(aws, stack, payload) -> tuple[dict, object]:
    response = aws("lambda").invoke(FunctionName=stack["JobPollerFunctionName"], Payload=json.dumps(payload).encode())
    body = response["Payload"].read()
    return response, json.loads(body) if body else None


def lost_claims(stack, source_id: str, at_least: int) -> list[str] | None:
    """Log lines of invocations that found their generation's turn taken, once there are enough."""
    lines = [
        line
        for line in log_lines(stack["JobPollerFunctionName"], contains="turn already taken")
        if source_id in line
    ]
    return lines if len(lines) >= at_least else None


def assert_no_second_notification(outcomes, key: str, settle: float = 2 * TIMEOUT_SECONDS):
    """Waits out a generation or two and checks nothing more arrived for `key`."""
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        assert len(outcomes.for_key(key)) == 1, outcomes.for_key(key)
    assert len(outcomes.for_key(key)) == 1


# --- tests -----------------------------------------------------------------


@pytest.mark.timeout(240)
def test_long_job_completes_through_several_generations_with_one_notification(stack, aws, fake_api, outcomes):
    key = put_report(aws, stack, fake_api, "long", seconds=2.5 * TIMEOUT_SECONDS)

    note = outcomes.wait_for(key, timeout=150)

    assert note["outcome"] == "SUCCEEDED", note
    assert note["generations"] >= 3, note
    assert note["source"]["bucket"] == stack["JobReportsBucketName"]
    assert note["duration_ms"] >= 2.5 * TIMEOUT_SECONDS * 1000 - 1000, note
    item = one_item(aws, stack, key)
    assert item["job_state"] == "SUCCEEDED"
    assert item["job_id"] == note["job_id"]
    assert chain_generations(item) == list(range(note["generations"])), item["chain"]
    assert len({link["request_id"] for link in item["chain"]}) == note["generations"], "one invocation per generation"
    assert "notified_at" in item
    assert len(fake_api.starts_for(key)) == 1
    assert_no_second_notification(outcomes, key)


@pytest.mark.timeout(240)
def test_job_outlasting_the_budget_ends_with_one_budget_exhausted_notification(stack, aws, fake_api, outcomes):
    key = put_report(aws, stack, fake_api, "endless", seconds=3600)

    note = outcomes.wait_for(key, timeout=180)

    assert note["outcome"] == "BUDGET_EXHAUSTED", note
    assert note["generations"] == MAX_GENERATIONS, note
    item = one_item(aws, stack, key)
    assert item["job_state"] == "BUDGET_EXHAUSTED"
    assert chain_generations(item) == list(range(MAX_GENERATIONS))
    assert_no_second_notification(outcomes, key)


@pytest.mark.timeout(240)
def test_duplicated_async_invocation_of_a_generation_leaves_one_chain(stack, aws, fake_api, outcomes):
    key = put_report(aws, stack, fake_api, "duplicated", seconds=3 * TIMEOUT_SECONDS)
    item = wait_until(
        lambda: next((i for i in job_items(aws, stack, key) if i.get("generation") == 1), None),
        timeout=60,
        interval=0.2,
        message="chain at generation 1",
    )
    # The event generation 1 will send for generation 2, delivered twice more.
    duplicate = {
        "kind": "job-poller/continue",
        "source_id": item["source_id"],
        "job_id": item["job_id"],
        "generation": 2,
        "budget_remaining": MAX_GENERATIONS - 3,
    }
    for _ in range(2):
        response = aws("lambda").invoke(
            FunctionName=stack["JobPollerFunctionName"], InvocationType="Event", Payload=json.dumps(duplicate).encode()
        )
        assert response["StatusCode"] == 202

    note = outcomes.wait_for(key, timeout=150)

    assert note["outcome"] == "SUCCEEDED", note
    item = one_item(aws, stack, key)
    generations = chain_generations(item)
    assert generations == list(range(len(generations))), f"one turn per generation: {item['chain']}"
    assert note["generations"] == len(generations)
    # Of the three deliveries of generation 2, two found the turn taken and exited.
    lost = wait_until(
        lambda: lost_claims(stack, item["source_id"], at_least=2),
        timeout=30,
        message="two duplicate generation-2 invocations logged as losing the claim",
    )
    assert len(lost) >= 2
    assert_no_second_notification(outcomes, key)


@pytest.mark.timeout(240)
def test_redelivered_s3_event_starts_no_second_job(stack, aws, fake_api, outcomes):
    key = put_report(aws, stack, fake_api, "redelivered", seconds=2 * TIMEOUT_SECONDS)
    item = wait_until(
        lambda: next((i for i in job_items(aws, stack, key) if i["job_state"] == "RUNNING"), None),
        timeout=60,
        interval=0.3,
        message="job running",
    )

    # Redelivered while the job runs, and again after it finished.
    _, summary = invoke_sync(aws, stack, s3_event_for(item))
    assert summary["jobs"][0]["action"] == "duplicate", summary
    note = outcomes.wait_for(key, timeout=120)
    assert note["outcome"] == "SUCCEEDED"
    _, summary = invoke_sync(aws, stack, s3_event_for(item))
    assert summary["jobs"][0]["action"] == "duplicate", summary

    assert len(fake_api.starts_for(key)) == 1
    assert len(job_items(aws, stack, key)) == 1
    assert_no_second_notification(outcomes, key, settle=3)


@pytest.mark.timeout(120)
def test_failed_and_vanished_jobs_end_with_one_failure_notification(stack, aws, fake_api, outcomes):
    failing = put_report(aws, stack, fake_api, "fail", seconds=1)
    vanishing = put_report(aws, stack, fake_api, "vanish", seconds=1)

    failed = outcomes.wait_for(failing, timeout=60)
    vanished = outcomes.wait_for(vanishing, timeout=60)

    assert failed["outcome"] == "FAILED" and failed["detail"] == "bad rows", failed
    assert vanished["outcome"] == "FAILED" and "404" in vanished["detail"], vanished
    assert one_item(aws, stack, failing)["job_state"] == "FAILED"
    assert_no_second_notification(outcomes, vanishing, settle=3)


@pytest.mark.timeout(120)
def test_oversized_job_answers_are_truncated_or_refused_and_notified_once(stack, aws, fake_api, outcomes):
    verbose = put_report(aws, stack, fake_api, "verbose", seconds=1)
    flood = put_report(aws, stack, fake_api, "flood", seconds=1)

    # 300 KB of message: recorded and notified, cut to 16 KiB and saying so.
    told = outcomes.wait_for(verbose, timeout=60)
    assert told["outcome"] == "SUCCEEDED", told
    assert len(told["detail"].encode()) <= 16 * 1024
    assert told["detail"].startswith("row 0 loaded\nrow 1 loaded\n"), told["detail"][:80]
    assert told["detail"].endswith(" … [truncated: 300000 bytes in all]"), told["detail"][-80:]
    item = one_item(aws, stack, verbose)
    assert item["job_state"] == "SUCCEEDED" and item["outcome_detail"] == told["detail"]

    # 2 MiB: not read past the 1 MiB limit; the job ends FAILED, the reason named.
    refused = outcomes.wait_for(flood, timeout=60)
    assert refused["outcome"] == "FAILED", refused
    assert "longer than 1048576 bytes (JOB_API_MAX_ANSWER_BYTES)" in refused["detail"], refused
    assert one_item(aws, stack, flood)["job_state"] == "FAILED"
    for key in (verbose, flood):
        assert_no_second_notification(outcomes, key, settle=3)


@pytest.mark.timeout(60)
def test_bad_input_is_rejected_or_skipped_without_a_job(stack, aws, fake_api):
    response, body = invoke_sync(aws, stack, {"hello": "world"})
    assert response.get("FunctionError") == "Unhandled", response
    assert body["errorType"] == "Permanent.InvalidEvent", body

    event = s3_event_for({"bucket": stack["JobReportsBucketName"], "object_key": "scratch/notes.txt", "etag": "e"})
    _, summary = invoke_sync(aws, stack, event)
    assert summary["jobs"] == [{"source": "scratch/notes.txt", "action": "skipped", "detail": "outside REPORT_PREFIX"}]

    # A notification naming another bucket starts nothing and fails with its reason.
    forged = s3_event_for({"bucket": "someone-elses-bucket", "object_key": "reports/forged.csv",
                           "etag": "e", "sequencer": "F" * 18})
    response, body = invoke_sync(aws, stack, forged)
    assert response.get("FunctionError") == "Unhandled", response
    assert body["errorType"] == "Permanent.ForeignBucket", body
    assert job_items(aws, stack, "reports/forged.csv") == []
    assert not fake_api.starts_for("reports/forged.csv")

    # An object outside the prefix never reaches the function (the notification filter).
    aws("s3").put_object(Bucket=stack["JobReportsBucketName"], Key="scratch/other.csv", Body=b"x")
    time.sleep(2)
    assert job_items(aws, stack, "scratch/other.csv") == []
    assert not [s for s in fake_api.starts if s["source"]["key"].startswith("scratch/")]


def emails_to(address: str) -> list[dict]:
    """Emails LocalStack's SES has sent to ``address`` (SNS email subscriptions go through it)."""
    try:
        with urllib.request.urlopen(f"{ENDPOINT}/_aws/ses", timeout=5) as response:
            messages = json.load(response)["messages"]
    except urllib.error.HTTPError as e:  # the SES endpoint exists once SES has started
        if e.code == 404:
            return []
        raise
    return [m for m in messages if address in m.get("Destination", {}).get("ToAddresses", [])]


def confirm_as_owner(sns, topic_arn: str, subscription_arn: str):
    """What following the link in AWS's confirmation email does (LocalStack keeps the token)."""
    quoted = urllib.parse.quote(subscription_arn, safe=":")
    with urllib.request.urlopen(f"{ENDPOINT}/_aws/sns/subscription-tokens/{quoted}", timeout=5) as response:
        token = json.load(response)["subscription_token"]
    sns.confirm_subscription(TopicArn=topic_arn, Token=token)


@pytest.mark.timeout(120)
def test_person_gets_the_outcome_as_text_while_machines_keep_the_json(stack, aws, fake_api, outcomes):
    sns, sqs = aws("sns"), aws("sqs")
    topic = stack["JobOutcomeTopicArn"]
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    endpoints = sorted((s["Protocol"], s["Endpoint"]) for s in subscriptions)
    assert [e for e in endpoints if e[0] != "sqs"] == [("email", ALERT_EMAIL)], endpoints
    email_subscription = next(s for s in subscriptions if s["Protocol"] == "email")
    confirm_as_owner(sns, topic, email_subscription["SubscriptionArn"])
    # An enveloped (not raw) subscriber, as an https endpoint gets it: the JSON plus the Subject.
    envelope_url = sqs.create_queue(QueueName=f"{marker()}-envelope")["QueueUrl"]
    envelope_arn = sqs.get_queue_attributes(QueueUrl=envelope_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    envelope_sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=envelope_arn)["SubscriptionArn"]
    try:
        key = put_report(aws, stack, fake_api, "mailed", seconds=1)
        note = outcomes.wait_for(key, timeout=60)

        # The raw queue: exactly the JSON it always had, compact, same fields in the same order.
        [body] = outcomes.bodies[key]
        assert list(note) == NOTIFICATION_FIELDS, body
        assert body == json.dumps(note, separators=(",", ":"), ensure_ascii=False)
        assert note["outcome"] == "SUCCEEDED" and note["detail"] == "loaded", note

        envelopes = wait_until(
            lambda: sqs.receive_message(QueueUrl=envelope_url, WaitTimeSeconds=1).get("Messages"),
            timeout=30,
            message="enveloped notification",
        )
        envelope = json.loads(envelopes[0]["Body"])
        assert envelope["Message"] == body
        took = f"{note['duration_ms']}ms" if note["duration_ms"] < 1000 else f"{note['duration_ms'] // 1000}s"
        assert envelope["Subject"] == f"sluice job {note['job_id']}: SUCCEEDED in {took}", envelope
        assert envelope["MessageAttributes"]["outcome"]["Value"] == "SUCCEEDED"

        # (LocalStack also mails unconfirmed subscriptions, so earlier tests' outcomes are there too.)
        [mail] = wait_until(
            lambda: [m for m in emails_to(ALERT_EMAIL) if f"/{key} (" in m["Body"]["text_part"]],
            timeout=30,
            message=f"email about {key} to {ALERT_EMAIL}",
        )
        text = mail["Body"]["text_part"]
        assert text.startswith(f"Job {note['job_id']} finished: it succeeded.\n\n"), text
        assert "\nOutcome:     SUCCEEDED\n" in text, text
        assert f"\nReport:      s3://{stack['JobReportsBucketName']}/{key} (" in text, text
        assert "\nDetail:      loaded\n" in text, text
        assert f"\nGenerations: {note['generations']} (" in text, text
        assert f"jobs table {stack['JobsTableName']}, source_id {note['source_id']}\n" in text, text
        assert not text.lstrip().startswith("{"), "the email is text, not the JSON"
    finally:
        sns.unsubscribe(SubscriptionArn=envelope_sub)
        sqs.delete_queue(QueueUrl=envelope_url)
