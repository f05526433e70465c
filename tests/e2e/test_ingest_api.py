"""ingest-api and kinesis-archiver end to end: events POSTed through the LocalStack API
Gateway URL (with the API key) land on the Kinesis stream enriched, and the archiver's
event source mapping writes them byte for byte into bzip2 objects under the UTC hour of
their arrival; every 4xx answer names its problem and writes nothing."""

import gzip
import json
import subprocess
import time
import urllib.error
import urllib.request
from datetime import timezone

import pytest

from conftest import ENDPOINT, REPO, log_lines, marker, wait_until


@pytest.fixture(scope="module")
def api(pipeline, aws):
    key = aws("apigateway").get_api_key(apiKey=pipeline["IngestApiKeyId"], includeValue=True)["value"]
    url = f"{ENDPOINT}/_aws/execute-api/{pipeline['IngestApiId']}/{pipeline['IngestApiStageName']}/events"
    return {"url": url, "key": key}


def post(api, body: bytes, headers: dict | None = None, api_key: str | None = "default"):
    """POSTs and returns (status, parsed JSON body or raw text)."""
    # Always a content type: urllib would otherwise send application/x-www-form-urlencoded,
    # which LocalStack's gateway re-encodes as a form.
    headers = {"Content-Type": "application/json", **(headers or {})}
    if api_key == "default":
        api_key = api["key"]
    if api_key is not None:
        headers["x-api-key"] = api_key
    request = urllib.request.Request(api["url"], data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def post_fence(pipeline, api, run: str) -> None:
    """POSTs one good event that must be accepted; on any other answer the failure shows
    the answer, the function's last log lines and LocalStack's lines about the invocation.
    A ``503`` (Kinesis too slow to answer in time: the function says which events to
    resend) is resent as the README tells clients to, at most twice."""
    for _ in range(3):
        status, answer = post(api, json.dumps({"player_id": "p-9", "run": run}).encode())
        if status == 202:
            return
        if status != 503:
            break
        time.sleep(1)
    function = pipeline["IngestApiFunctionName"]
    lines = log_lines(function)[-30:]
    log = REPO / ".localstack" / "localstack.log"
    gateway = []
    if log.exists():
        gateway = [line for line in log.read_text(errors="replace").splitlines() if "integration" in line.lower()][-10:]
    pytest.fail(
        f"fence POST answered {status}: {answer!r}\n--- {function} log (last 30) ---\n"
        + "\n".join(lines)
        + "\n--- LocalStack integration lines ---\n"
        + "\n".join(gateway)
    )


def stream_records(aws, stream: str) -> list[dict]:
    """Every record currently in the (single-shard) stream, oldest first."""
    kinesis = aws("kinesis")
    records = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            for record in page["Records"]:
                record["ShardId"] = shard["ShardId"]
            records.extend(page["Records"])
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    return records


def records_with(aws, stream: str, tag: str) -> list[dict]:
    return [r for r in stream_records(aws, stream) if tag.encode() in r["Data"]]


def archive_prefix(pipeline) -> str:
    """The archive key prefix, from the ``s3://bucket/prefix`` output."""
    return pipeline["ArchiveLocation"].removeprefix(f"s3://{pipeline['ArchiveBucketName']}/")


def bunzip2(data: bytes) -> bytes:
    """Decompresses with the stock bzip2 CLI, as a downstream job would."""
    return subprocess.run(["bzip2", "-dc"], input=data, capture_output=True, check=True).stdout


def archive_objects(aws, bucket: str, prefix: str) -> dict[str, dict]:
    """Every archive object under ``prefix``: key -> {"body": decompressed, "metadata": ...}."""
    s3 = aws("s3")
    objects = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            got = s3.get_object(Bucket=bucket, Key=item["Key"])
            objects[item["Key"]] = {"body": bunzip2(got["Body"].read()), "metadata": got["Metadata"]}
    return objects


def test_posted_events_reach_the_stream_enriched_and_the_archive_byte_for_byte(pipeline, api, aws):
    tag = marker()
    ndjson_events = [
        {"player_id": "player-000042", "kind": "login", "run": tag, "n": 1, "device": {"os": "ios"}},
        {"player_id": "player-000042", "kind": "match_start", "run": tag, "n": 2, "score": 1.50},
        {"player_id": "player-001337", "kind": "purchase", "run": tag, "n": 3, "sku": "skin.dragon"},
    ]
    ndjson = "".join(json.dumps(e) + "\n" for e in ndjson_events).encode()
    status, answer = post(api, ndjson, {"Content-Type": "application/x-ndjson"})
    assert (status, answer) == (202, {"accepted": 3})

    array_events = [{"player_id": "player-000007", "kind": "logout", "run": tag, "n": n} for n in (4, 5)]
    status, answer = post(
        api,
        gzip.compress(json.dumps(array_events).encode()),
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert (status, answer) == (202, {"accepted": 2})

    stream = pipeline["EventStreamName"]
    records = wait_until(
        lambda: (found := records_with(aws, stream, tag)) and len(found) >= 5 and found,
        timeout=30,
        message="5 records on the stream",
    )
    assert len(records) == 5, "each event written exactly once"
    by_n = {}
    for record in records:
        event = json.loads(record["Data"])
        assert isinstance(event.pop("received_at"), int)
        assert event.pop("request_id")
        by_n[event["n"]] = (event, record)
    for original in ndjson_events + array_events:
        event, record = by_n[original["n"]]
        assert event == original
        assert record["PartitionKey"] == original["player_id"]
        assert b"\n" not in record["Data"]

    # The archiver (event source mapping) writes every record, byte for byte, into the
    # object of its arrival hour.
    bucket, prefix = pipeline["ArchiveBucketName"], archive_prefix(pipeline)

    def archived():
        objects = archive_objects(aws, bucket, prefix)
        lines = [
            (key, line)
            for key, obj in objects.items()
            for line in obj["body"].split(b"\n")
            if tag.encode() in line
        ]
        return len(lines) >= 5 and (objects, lines)

    objects, lines = wait_until(archived, timeout=120, interval=2, message="5 records archived")
    assert sorted(line for _, line in lines) == sorted(r["Data"] for r in records), "byte for byte, once each"
    for key, line in lines:
        record = next(r for r in records if r["Data"] == line)
        hour = record["ApproximateArrivalTimestamp"].astimezone(timezone.utc)
        assert key.startswith(f"{prefix}{hour:%Y}/{hour:%m}/player_events.{hour:%Y%m%d%H}.{record['ShardId']}-"), key
        metadata = objects[key]["metadata"]
        assert metadata["shard-id"] == record["ShardId"]
        assert int(metadata["first-sequence-number"]) <= int(record["SequenceNumber"]) <= int(
            metadata["last-sequence-number"]
        )
        body = objects[key]["body"]
        assert body.endswith(b"\n") and body.count(b"\n") == int(metadata["record-count"])


BAD_REQUESTS = [
    # (name, body, headers, status, message fragment)
    ("empty body", b"", {"Content-Type": "application/json"}, 400, "request body is empty"),
    (
        "malformed json",
        b'{"player_id": "p-1" "run": "TAG"}',
        {"Content-Type": "application/json"},
        400,
        "malformed JSON at line 1, column 21: expected `,` or `}`",
    ),
    (
        "malformed ndjson line",
        b'{"player_id":"p-1","run":"TAG"}\n{"player_id":"p-2","run":"TAG",}\n',
        {"Content-Type": "application/x-ndjson"},
        400,
        "malformed JSON on NDJSON line 2, column 42: trailing comma",
    ),
    (
        "non-object event",
        b'[{"player_id":"p-1","run":"TAG"}, "logout"]',
        {"Content-Type": "application/json"},
        400,
        "array index 1 is a string, not a JSON object",
    ),
    (
        "non-object ndjson line",
        b'{"player_id":"p-1","run":"TAG"}\n42\n',
        {"Content-Type": "application/x-ndjson"},
        400,
        "line 2 is a number, not a JSON object",
    ),
    (
        # A few kB on the wire inflating past MAX_BODY_BYTES: the function inflates it (the
        # local API Gateway hands it the body as sent, as AWS's does) within the limit.
        "gzip bomb over the body limit",
        None,
        {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
        413,
        "the limit of 4700160 bytes",
    ),
    (
        # 10,001 tiny events (~0.4 MB): a 503 listing each would be unbounded, so it is refused.
        "more events than MAX_EVENTS",
        b'{"player_id":"p-1","run":"TAG"}\n' + b"{}\n" * 10_000,
        {"Content-Type": "application/x-ndjson"},
        413,
        "the request holds 10001 events, over the limit of 10000 events per request (MAX_EVENTS)",
    ),
]


def post_answer(api, body: bytes, headers: dict) -> tuple[int, dict, dict]:
    """POSTs with the API key; (status, response headers, parsed JSON body)."""
    headers = {"x-api-key": api["key"], **headers}
    request = urllib.request.Request(api["url"], data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_a_resend_with_the_same_idempotency_key_gets_the_first_answer_and_writes_nothing(pipeline, api, aws):
    tag = marker()
    events = [{"player_id": f"player-{n:06}", "run": tag, "n": n} for n in range(3)]
    body = "".join(json.dumps(e) + "\n" for e in events).encode()
    headers = {"Content-Type": "application/x-ndjson", "Idempotency-Key": f"order-{tag}"}

    status, first_headers, first = post_answer(api, body, headers)
    assert (status, first) == (202, {"accepted": 3}), first
    assert "idempotent-replayed" not in {k.lower() for k in first_headers}
    # The client lost the answer and sends the same request again, twice.
    for _ in range(2):
        status, again_headers, again = post_answer(api, body, headers)
        assert (status, again) == (202, first)
        assert {k.lower(): v for k, v in again_headers.items()}.get("idempotent-replayed") == "true", again_headers
    # The same key for another request: refused, nothing written.
    other = json.dumps({"player_id": "player-000009", "run": tag, "n": 9}).encode()
    status, _, refused = post_answer(api, other, headers)
    assert status == 422 and "Idempotency-Key" in refused["message"], refused

    on_stream = records_with(aws, pipeline["EventStreamName"], tag)
    assert sorted(json.loads(r["Data"])["n"] for r in on_stream) == [0, 1, 2], "each event written once"

    table = aws("dynamodb").scan(TableName=pipeline["IngestIdempotencyTableName"])["Items"]
    mine = [i for i in table if i["idempotency_key"]["S"].endswith(f":order-{tag}")]
    assert len(mine) == 1 and mine[0]["status"]["S"] == "COMPLETED", mine
    window = int(mine[0]["expires_at"]["N"]) - time.time()
    assert 3500 < window <= 3600, f"kept for the window (TTL in epoch seconds): {window:.0f} s"
    print(f"idempotency item {mine[0]['idempotency_key']['S']}: replayed twice, 422 for other content")


@pytest.mark.parametrize("name,body,headers,status,fragment", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_requests_get_their_status_and_message_and_write_nothing(
    pipeline, api, aws, name, body, headers, status, fragment
):
    tag = marker()
    if body is None:
        line = json.dumps({"player_id": "p-1", "run": tag, "pad": " " * 1000}).encode() + b"\n"
        body = gzip.compress(line * 6000)  # ~6 MB inflated, a few kB sent
        assert len(body) < 100_000
    else:
        body = body.replace(b"TAG", tag.encode())
    got_status, answer = post(api, body, headers)
    assert got_status == status, answer
    assert fragment in answer["message"], answer

    # A good request after the bad one is the fence: once it is on the stream, anything the
    # bad request had written would be there too.
    fence = marker()
    post_fence(pipeline, api, fence)
    stream = pipeline["EventStreamName"]
    wait_until(lambda: records_with(aws, stream, fence), timeout=30, message="fence record on the stream")
    assert records_with(aws, stream, tag) == []


def test_requests_without_the_api_key_are_refused(pipeline, api, aws):
    tag = marker()
    status, _ = post(api, json.dumps({"player_id": "p-1", "run": tag}).encode(), api_key=None)
    assert status == 403
    status, _ = post(api, json.dumps({"player_id": "p-1", "run": tag}).encode(), api_key="not-the-key")
    assert status == 403
    fence = marker()
    post_fence(pipeline, api, fence)
    stream = pipeline["EventStreamName"]
    wait_until(lambda: records_with(aws, stream, fence), timeout=30, message="fence record on the stream")
    assert records_with(aws, stream, tag) == []


def test_resending_a_request_adds_records_but_never_loses_any(pipeline, api, aws):
    """A client retry (after a lost response) is at-least-once: both copies are written,
    told apart by their request ids; nothing is lost or merged."""
    tag = marker()
    body = json.dumps([{"player_id": "p-5", "run": tag, "n": n} for n in range(3)]).encode()
    assert post(api, body) == (202, {"accepted": 3})
    assert post(api, body) == (202, {"accepted": 3})
    stream = pipeline["EventStreamName"]
    records = wait_until(
        lambda: (found := records_with(aws, stream, tag)) and len(found) >= 6 and found, timeout=30
    )
    assert len(records) == 6
    request_ids = {json.loads(r["Data"])["request_id"] for r in records}
    assert len(request_ids) == 2
    assert sorted(json.loads(r["Data"])["n"] for r in records) == [0, 0, 1, 1, 2, 2]
