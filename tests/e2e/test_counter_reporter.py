"""counter-reporter end to end: counter files uploaded to the counters bucket run the whole
chain (counter-mapper -> instance table -> counter-aggregator -> aggregate table -> its
stream -> counter-reporter), and the reporter's outputs are read back: the day's totals
snapshot on S3 and the limit alerts on the queue subscribed to the alert topic.

Redelivery and replay are driven by invoking the deployed reporter with stream records
crafted from the aggregate table's own items (the same record the mapping delivered, or
an older version of it): LocalStack cannot be made to redeliver a batch on demand.
"""

import json
import time

import pytest
from conftest import client, drain_queue, invoke, wait_until
from test_counter_mapper import aggregates, unique_date, upload, wait_total

LIMITS = [
    {"counter": "RPT_HOT", "max": 100},
    {"counter": "RPT_LOW*", "min": 10},
]


@pytest.fixture(scope="module")
def stack(deploy):
    return deploy("infra/pipeline.yaml", CounterLimits=json.dumps(LIMITS))


def snapshot(outputs, date) -> dict[str, dict]:
    """counter -> line of the day's snapshot ({} when there is none yet)."""
    key = f"{outputs['CounterTotalsPrefix']}{date}/totals.jsonl"
    try:
        body = client("s3").get_object(Bucket=outputs["CounterTotalsBucketName"], Key=key)["Body"].read()
    except client("s3").exceptions.NoSuchKey:
        return {}
    lines = [json.loads(line) for line in body.decode().splitlines() if line]
    assert [line["counter"] for line in lines] == sorted(line["counter"] for line in lines), "sorted by counter"
    return {line["counter"]: line for line in lines}


def wait_snapshot_matches_table(outputs, date, timeout=180):
    """Waits until the snapshot holds exactly the aggregate table's totals and versions for `date`."""

    def same():
        table = {c: (i["Value"], i["Version"]) for c, i in aggregates(outputs, date).items()}
        snap = {c: (line["total"], line["version"]) for c, line in snapshot(outputs, date).items()}
        return snap if table and snap == table else None

    return wait_until(same, timeout=timeout, interval=1, message=f"snapshot of {date} equals the aggregate table")


def alerts(outputs, wait_seconds=1) -> list[dict]:
    return [json.loads(body) for body in drain_queue(outputs["CounterAlertQueueUrl"], wait_seconds=wait_seconds)]


def alerts_for(outputs, date, counter, want: int, settle: float = 8) -> list[dict]:
    """Every alert for (counter, date) until at least `want` arrived, then `settle` s more."""
    got: list[dict] = []

    def enough():
        got.extend(a for a in alerts(outputs) if a["date"] == date and a["counter"] == counter)
        return len(got) >= want

    wait_until(enough, timeout=180, interval=1, message=f"{want} alert(s) for {counter} on {date}")
    end = time.monotonic() + settle
    while time.monotonic() < end:
        got.extend(a for a in alerts(outputs) if a["date"] == date and a["counter"] == counter)
    return got


def aggregate_record(seq, counter, date, value, version, name="MODIFY"):
    """An aggregate-table stream record as the mapping delivers it (NEW_IMAGE view)."""
    return {
        "eventID": f"e-{seq}",
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/crafted/stream/2026-01-01T00:00:00.000",
        "dynamodb": {
            "Keys": {"Counter": {"S": counter}, "Date": {"S": date}},
            "SequenceNumber": seq,
            "SizeBytes": 120,
            "StreamViewType": "NEW_IMAGE",
            "ApproximateCreationDateTime": 1767225600.0,
            "NewImage": {
                "Counter": {"S": counter},
                "Date": {"S": date},
                "Value": {"N": str(value)},
                "Version": {"N": str(version)},
                "UpdatedAt": {"S": "2026-01-01T00:00:00Z"},
            },
        },
    }


@pytest.mark.timeout(600)
def test_changed_totals_are_snapshotted_and_equal_the_aggregate_table(stack):
    date = unique_date()
    upload(stack, date, "i-1", "RPT_A 5\nRPT_B 7\n")
    upload(stack, date, "i-2", "RPT_A 10\nRPT_C -3\n")
    wait_total(stack, date, "RPT_A", 15)
    first = wait_snapshot_matches_table(stack, date)
    assert set(first) == {"RPT_A", "RPT_B", "RPT_C"}
    assert first["RPT_A"][0] == 15

    # A change of one counter rewrites the day with every counter in it.
    upload(stack, date, "i-1", "RPT_A 6\nRPT_B 7\n")
    wait_total(stack, date, "RPT_A", 16)
    second = wait_snapshot_matches_table(stack, date)
    assert second["RPT_A"][0] == 16 and second["RPT_A"][1] > first["RPT_A"][1]
    assert second["RPT_B"] == first["RPT_B"]
    # A bad record from the stream would sit in the failure queue: none.
    assert drain_queue(stack["CounterReporterFailureQueueUrl"], wait_seconds=1) == []


@pytest.mark.timeout(600)
def test_an_older_stream_record_replayed_never_puts_the_snapshot_back(stack):
    date = unique_date()
    upload(stack, date, "i-1", "RPT_R 1\n")
    wait_total(stack, date, "RPT_R", 1)
    upload(stack, date, "i-1", "RPT_R 2\n")
    wait_total(stack, date, "RPT_R", 2)
    wait_snapshot_matches_table(stack, date)
    s3 = client("s3")
    key = f"{stack['CounterTotalsPrefix']}{date}/totals.jsonl"
    before = s3.get_object(Bucket=stack["CounterTotalsBucketName"], Key=key)
    body_before = before["Body"].read()

    # The version-1 record again (a replay, a redriven range), and the current one again.
    replay = {
        "Records": [
            aggregate_record("900", "RPT_R", date, 1, 1, name="INSERT"),
            aggregate_record("901", "RPT_R", date, 2, 2),
        ]
    }
    response, body = invoke(stack["CounterReporterFunctionName"], replay)
    assert "FunctionError" not in response, body
    assert body == {"batchItemFailures": []}
    after = s3.get_object(Bucket=stack["CounterTotalsBucketName"], Key=key)
    assert after["Body"].read() == body_before
    assert after["ETag"] == before["ETag"], "an unchanged snapshot is not rewritten"
    assert snapshot(stack, date)["RPT_R"]["total"] == 2


@pytest.mark.timeout(900)
def test_a_counter_crossing_its_limit_alerts_once_and_once_more_when_back(stack):
    date = unique_date()
    alerts(stack)  # other tests' alerts are for other dates; start from an empty queue anyway
    upload(stack, date, "i-1", "RPT_HOT 50\nRPT_LOW1 20\n")
    wait_total(stack, date, "RPT_HOT", 50)
    wait_snapshot_matches_table(stack, date)

    # 50 + 70 = 120 > 100: one alert.
    upload(stack, date, "i-2", "RPT_HOT 70\n")
    wait_total(stack, date, "RPT_HOT", 120)
    got = alerts_for(stack, date, "RPT_HOT", want=1)
    assert len(got) == 1, got
    alert = got[0]
    assert (alert["standing"], alert["previous"], alert["total"]) == ("above", "in_range", 120)
    assert alert["limits"] == "..100"
    assert alert["snapshot"] == f"s3://{stack['CounterTotalsBucketName']}/{stack['CounterTotalsPrefix']}{date}/totals.jsonl"

    # The same stream record delivered again (the batch redelivered): no second alert.
    item = aggregates(stack, date)["RPT_HOT"]
    batch = {"Records": [aggregate_record("950", "RPT_HOT", date, item["Value"], item["Version"])]}
    response, body = invoke(stack["CounterReporterFunctionName"], batch)
    assert body == {"batchItemFailures": []}, body
    response, body = invoke(stack["CounterReporterFunctionName"], batch)
    assert body == {"batchItemFailures": []}, body
    # A newer total still above the limit: no alert either.
    upload(stack, date, "i-3", "RPT_HOT 5\n")
    wait_total(stack, date, "RPT_HOT", 125)
    wait_snapshot_matches_table(stack, date)
    assert [a for a in alerts(stack, wait_seconds=2) if a["date"] == date] == []

    # Back in range (50 + 70 + 5 - 80 = 45): one recovery message.
    upload(stack, date, "i-2", "RPT_HOT -10\n")
    wait_total(stack, date, "RPT_HOT", 45)
    got = alerts_for(stack, date, "RPT_HOT", want=1)
    assert len(got) == 1, got
    assert (got[0]["standing"], got[0]["previous"], got[0]["total"]) == ("in_range", "above", 45)

    # An unchanged total (the aggregator writes nothing, the reporter hears nothing) and a
    # counter that never left its range: no message.
    upload(stack, date, "i-3", "RPT_HOT 5\nRPT_LOW1 0\n")
    upload(stack, date, "i-4", "RPT_LOW1 5\n")
    wait_total(stack, date, "RPT_LOW1", 25)
    wait_snapshot_matches_table(stack, date)
    assert [a for a in alerts(stack, wait_seconds=2) if a["date"] == date] == []
    assert drain_queue(stack["CounterReporterFailureQueueUrl"], wait_seconds=1) == []


@pytest.mark.timeout(300)
def test_a_record_whose_date_cannot_make_a_key_is_the_checkpoint(stack):
    batch = {"Records": [aggregate_record("970", "RPT_X", "2026/01/01", 1, 1, name="INSERT")]}
    response, body = invoke(stack["CounterReporterFunctionName"], batch)
    assert "FunctionError" not in response, body
    assert body == {"batchItemFailures": [{"itemIdentifier": "970"}]}
