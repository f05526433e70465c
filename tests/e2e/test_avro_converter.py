"""avro-converter end to end: snappy JSON put into the raw bucket of the deployed pipeline
(the release zip, run by LocalStack's S3 notification) -> Avro files in UTC hour partitions,
read back with fastavro and with apache-avro (the crate's `avro_cat` example), and rejects in
the error prefix. Inputs are made with cramjam (raw and framed snappy)."""

import copy
import hashlib
import json
import os
import subprocess
import urllib.parse
from pathlib import Path

import cramjam
import fastavro
import pytest
from conftest import REPO, invoke, marker, wait_until

pytestmark = pytest.mark.timeout(420)

SCHEMA = json.loads((REPO / "functions/avro-converter/schema/player_event.avsc").read_text())
# 2024-05-14T09:59:57Z: one second apart, three events in hour 09 and three in hour 10.
NEAR_TEN_MS = 1_715_680_797_000
DAY = "year=2024/month=05/day=14"


def avro_name(input_key: str) -> str:
    """`<stem>.<tag>`: the converter's name for every Avro file of an input (one per hour);
    the tag is the first 16 hex characters of SHA-256 of the whole input key."""
    stem = input_key.rsplit("/", 1)[-1]
    for suffixes in ((".snappy", ".sz"), (".json", ".ndjson", ".jsonl")):
        for suffix in suffixes:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
    return f"{stem}.{hashlib.sha256(input_key.encode()).hexdigest()[:16]}"


def player_event(i: int, pts: int) -> dict:
    event = {
        "PTS": pts,
        "event_id": f"6f1c2d3e-0000-4000-8000-{i:012d}",
        "event_type": ["play", "heartbeat", "bitrate_change", "pause"][i % 4],
        "session_id": "s-7d2f0c9a11e4b6a3",
        "content_id": "title-04217",
        "user_id": None if i % 3 == 0 else "u-00042017",
        "device_id": "d-0a1b2c3d4e5f",
        "content_type": "vod",
        "position_ms": 120_000 + i * 1_000,
        "duration_ms": 5_400_000,
        "bitrate_kbps": 5_000,
        "resolution": "1920x1080",
        "buffer_ms": 18_500,
        "volume": 0.75,
        "muted": False,
        "cdn": "cloudfront",
        "country": "GB",
        "player": {"name": "shaka", "version": "4.7.11"},
        "device": {"platform": "web", "os_version": "14.4"},
        "experiments": ["abr-v2"],
        "custom": {"page": "watch", "autoplay": "true"},
        "not_in_schema": "dropped by coercion",
    }
    if i % 2:
        del event["experiments"]
    return event


def coerced(value, schema, named=None):
    """What the schema makes of a JSON value: defaults filled in, unknown fields dropped."""
    named = {} if named is None else named
    if isinstance(schema, list):
        if value is None:
            return None
        return coerced(value, next(s for s in schema if s != "null"), named)
    if isinstance(schema, str):
        if schema in named:
            return coerced(value, named[schema], named)
        return float(value) if schema in ("float", "double") else value
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        return {f["name"]: coerced(value.get(f["name"], f.get("default")), f["type"], named) for f in schema["fields"]}
    if kind == "array":
        return [coerced(v, schema["items"], named) for v in value]
    if kind == "map":
        return {k: coerced(v, schema["values"], named) for k, v in value.items()}
    return coerced(value, kind, named)


def expected(records):
    return [coerced(r, SCHEMA) for r in records]


def ndjson(records) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def raw_snappy(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(data))


def framed_snappy(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress(data))


def read_fastavro(body: bytes):
    import io

    reader = fastavro.reader(io.BytesIO(body))
    return reader.codec, list(reader)


@pytest.fixture(scope="module")
def avro_cat():
    """The crate's apache-avro reader example (already built by `cargo test`; cheap if fresh)."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache/sluice/target")
    subprocess.run(
        ["cargo", "build", "--quiet", "-p", "avro-converter", "--example", "avro_cat"],
        cwd=REPO,
        check=True,
        env={**os.environ, "CARGO_TARGET_DIR": str(target)},
        timeout=900,
    )
    binary = target / "debug" / "examples" / "avro_cat"
    assert binary.is_file(), binary

    def read(paths):
        out = subprocess.run([str(binary), *map(str, paths)], check=True, capture_output=True, timeout=60)
        return [json.loads(line) for line in out.stdout.splitlines()]

    return read


@pytest.fixture(scope="module")
def stack(pipeline, aws):
    s3 = aws("s3")
    return {
        "s3": s3,
        "raw": pipeline["AvroRawBucketName"],
        "input_prefix": pipeline["AvroInputPrefix"],
        "out": pipeline["AvroOutputBucketName"],
        "out_prefix": pipeline["AvroOutputPrefix"],
        "err_prefix": pipeline["AvroErrorPrefix"],
        "function": pipeline["AvroConverterFunctionName"],
    }


def get(stack, key) -> bytes:
    return stack["s3"].get_object(Bucket=stack["out"], Key=key)["Body"].read()


def keys_under(stack, prefix):
    pages = stack["s3"].get_paginator("list_objects_v2").paginate(Bucket=stack["out"], Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def s3_event(stack, key):
    """The notification S3 sends for `key` (what a redelivery carries again)."""
    head = stack["s3"].head_object(Bucket=stack["raw"], Key=key)
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2024-05-14T10:00:05.000Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": stack["raw"], "arn": f"arn:aws:s3:::{stack['raw']}"},
                    "object": {
                        "key": urllib.parse.quote_plus(key, safe="/"),
                        "size": head["ContentLength"],
                        "eTag": head["ETag"].strip('"'),
                        "sequencer": "0066433E2F8B4A1D9C",
                    },
                },
            }
        ]
    }


@pytest.fixture(scope="module")
def converted(stack):
    """Puts the inputs once for the module and waits for every output."""
    m = marker()
    s3, prefix = stack["s3"], stack["input_prefix"]
    single = player_event(0, NEAR_TEN_MS - 3_600_000)  # hour 08
    array = [player_event(i, NEAR_TEN_MS + 5_000 + i) for i in range(1, 4)]  # hour 10
    spanning = [player_event(i, NEAR_TEN_MS + i * 1_000) for i in range(6)]  # 09:59:57..10:00:02
    bad = copy.deepcopy(spanning[4])
    bad["bitrate_kbps"] = "high"
    with_bad = spanning[:4] + [bad] + spanning[5:]
    inputs = {
        # one pretty-printed object (as the original converter got them), raw snappy
        "single": (f"{prefix}e2e/{m}/single-{m}.json.snappy", raw_snappy(json.dumps(single, indent=2).encode())),
        # a JSON array, framed snappy, and a key S3 must encode in the notification
        "array": (f"{prefix}e2e/{m}/array {m} (eu).json.snappy", framed_snappy(json.dumps(array).encode())),
        # NDJSON across two hours with one bad record, framed snappy
        "ndjson": (f"{prefix}e2e/{m}/ndjson-{m}.json.snappy", framed_snappy(ndjson(with_bad))),
        # NDJSON, raw snappy
        "ndjson_raw": (f"{prefix}e2e/{m}/ndjson-raw-{m}.json.snappy", raw_snappy(ndjson(spanning[:2]))),
    }
    for key, body in inputs.values():
        s3.put_object(Bucket=stack["raw"], Key=key, Body=body)
    out = stack["out_prefix"]
    name = {case: avro_name(key) for case, (key, _) in inputs.items()}
    files = {
        "single": [f"{out}{DAY}/hour=08/{name['single']}.avro"],
        "array": [f"{out}{DAY}/hour=10/{name['array']}.avro"],
        "ndjson": [f"{out}{DAY}/hour=09/{name['ndjson']}.avro", f"{out}{DAY}/hour=10/{name['ndjson']}.avro"],
        "ndjson_raw": [f"{out}{DAY}/hour=09/{name['ndjson_raw']}.avro"],
    }
    errors_key = f"{stack['err_prefix']}{prefix}e2e/{m}/ndjson-{m}.errors.jsonl"
    wanted = sorted(k for keys in files.values() for k in keys)

    def all_written():
        present = set(keys_under(stack, f"{out}{DAY}/"))
        errors = keys_under(stack, errors_key)
        return all(k in present for k in wanted) and errors

    wait_until(all_written, timeout=240, interval=1, message="Avro files and errors file written")
    return {
        "marker": m,
        "inputs": inputs,
        "files": files,
        "errors_key": errors_key,
        "records": {"single": [single], "array": array, "ndjson": spanning[:4] + spanning[5:], "ndjson_raw": spanning[:2]},
        "bad": bad,
    }


def test_inputs_of_every_shape_become_snappy_avro_in_utc_hour_partitions(stack, converted):
    for name, keys in converted["files"].items():
        records = []
        for key in keys:
            codec, file_records = read_fastavro(get(stack, key))
            assert codec == "snappy", key
            records.extend(file_records)
        assert records == expected(converted["records"][name]), name
    # The records of one input spanning two hours are split by hour, in input order.
    hour9, hour10 = converted["files"]["ndjson"]
    assert [r["PTS"] for r in read_fastavro(get(stack, hour9))[1]] == [NEAR_TEN_MS, NEAR_TEN_MS + 1_000, NEAR_TEN_MS + 2_000]
    assert [r["PTS"] for r in read_fastavro(get(stack, hour10))[1]] == [NEAR_TEN_MS + 3_000, NEAR_TEN_MS + 5_000]
    # Nothing else was written for these inputs.
    m = converted["marker"]
    written = [k for k in keys_under(stack, f"{stack['out_prefix']}") if m in k]
    assert sorted(written) == sorted(k for keys in converted["files"].values() for k in keys)


def test_apache_avro_reads_the_same_records_as_fastavro(stack, converted, avro_cat, tmp_path):
    for name, keys in converted["files"].items():
        for i, key in enumerate(keys):
            path = tmp_path / f"{name}-{i}.avro"
            path.write_bytes(get(stack, key))
            assert avro_cat([path]) == read_fastavro(path.read_bytes())[1], key


def test_the_bad_record_is_in_the_errors_file_with_its_reason(stack, converted):
    body = get(stack, converted["errors_key"])
    lines = [json.loads(line) for line in body.splitlines()]
    assert len(lines) == 1, lines
    [line] = lines
    assert line["record"] == converted["bad"]
    assert line["path"] == "$.bitrate_kbps"
    assert line["expected"] == "int"
    assert line["reason"] == 'at $.bitrate_kbps: expected int, found string "high"'
    assert line["index"] == 4 and line["line"] == 5
    ndjson_key = converted["inputs"]["ndjson"][0]
    assert line["source"] == f"s3://{stack['raw']}/{ndjson_key}"


def test_redelivery_rewrites_the_same_files_with_the_same_bytes(stack, converted):
    key = converted["inputs"]["ndjson"][0]
    files = converted["files"]["ndjson"]
    before = {k: get(stack, k) for k in files + [converted["errors_key"]]}
    response, summary = invoke(stack["function"], s3_event(stack, key))
    assert "FunctionError" not in response, summary
    [outcome] = summary["objects"]
    assert outcome["outcome"] == "converted"
    assert outcome["files"] == files
    assert (outcome["records"], outcome["rejected"]) == (5, 1)
    after = {k: get(stack, k) for k in before}
    assert after == before
    m = converted["marker"]
    written = [k for k in keys_under(stack, stack["out_prefix"]) if f"ndjson-{m}" in k]
    assert sorted(written) == sorted(files), "no duplicate files"


def test_inputs_that_are_not_snappy_or_not_json_go_to_the_error_prefix_without_failing(stack):
    m = marker()
    prefix, err = stack["input_prefix"], stack["err_prefix"]
    cases = {
        "not_snappy": (f"{prefix}e2e/{m}/plain-{m}.json.snappy", json.dumps(player_event(1, NEAR_TEN_MS)).encode()),
        "not_json": (f"{prefix}e2e/{m}/csv-{m}.json.snappy", raw_snappy(b"PTS,event_id\n1715680797000,e-1\n")),
    }
    for key, body in cases.values():
        stack["s3"].put_object(Bucket=stack["raw"], Key=key, Body=body)
    for kind, (key, body) in cases.items():
        stem = key.rsplit("/", 1)[1].removesuffix(".json.snappy")
        errors_key = f"{err}{prefix}e2e/{m}/{stem}.errors.jsonl"
        found = wait_until(lambda: keys_under(stack, errors_key), timeout=120, message=f"{kind} errors file")
        assert found == [errors_key]
        [line] = [json.loads(x) for x in get(stack, errors_key).splitlines()]
        assert line["kind"] == kind
        assert line["source"] == f"s3://{stack['raw']}/{key}"
        assert line["copy"] == f"s3://{stack['out']}/{err}{key}"
        assert get(stack, f"{err}{key}") == body
        # Delivered again, the function answers without an error: nothing to retry.
        response, summary = invoke(stack["function"], s3_event(stack, key))
        assert "FunctionError" not in response, summary
        assert summary["objects"][0]["outcome"] == "input_rejected"
    assert not [k for k in keys_under(stack, stack["out_prefix"]) if m in k]


def test_an_event_for_the_functions_own_output_is_ignored(stack, converted):
    key = converted["files"]["array"][0]
    event = s3_event(stack | {"raw": stack["out"]}, key)
    response, summary = invoke(stack["function"], event)
    assert "FunctionError" not in response, summary
    assert summary["objects"][0] == {"outcome": "ignored", "bucket": stack["out"], "key": key, "why": "own_output"}
