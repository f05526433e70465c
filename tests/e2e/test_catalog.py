"""The Glue/Athena tables of infra/pipeline.yaml describe what the functions really write.

Glue and Athena are not in LocalStack's community edition (their APIs answer "not included in
your current license plan"; its CloudFormation only stubs the resource types), so
infra/deploy.py deploys the pipeline there with EnableCatalog=false and this test proves the
contract from the template text instead:

1. real inputs go through the deployed functions (events POSTed to ingest-api -> stream ->
   kinesis-archiver; snappy JSON files -> avro-converter), and the test waits for their objects;
2. for every hour of the run, the S3 location each table's partition projection enumerates is
   computed from the template's own table properties (`storage.location.template`, projection
   types, ranges and digits; bucket names and prefixes from the stack outputs), and every object
   the run wrote must lie under one of them (rejects under none);
3. the Avro files' writer schema must give exactly the table's columns (names and Athena types,
   by infra/glue_schema.py's AvroSerDe mapping) and the nullability of its avro.schema.literal;
4. Polars SQL over the objects laid out as the tables' partitions (partition columns parsed from
   each path with the location template; the archive decompressed with bz2 and read as NDJSON)
   gives per-hour row counts equal to the inputs sent, from the Avro table and the archive table.
The layout code is tools/query/catalog_layout.py, the same the demo's `query` step runs.
"""

import json
import sys
from collections import Counter
from datetime import datetime, timezone

import pytest

from conftest import ENDPOINT, REPO, marker, wait_until
from test_avro_converter import framed_snappy, ndjson, player_event
from test_ingest_api import post, stream_records

sys.path.insert(0, str(REPO / "tools" / "query"))
sys.path.insert(0, str(REPO / "infra"))

import catalog_layout as layout  # noqa: E402
import glue_schema  # noqa: E402
import sluice_query  # noqa: E402

pytestmark = pytest.mark.timeout(600)

HOUR_MS = 3_600_000
# 2025-12-31T22:10:00Z: the run's Avro events fall in three hours across a day, month and year boundary.
START_MS = 1_767_219_000_000
AVRO_HOURS = {0: 2, 1: 3, 2: 4}  # hour offset from START_MS -> valid events in it


def hour_of(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).replace(minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def run(deploy, aws):
    outputs = deploy("infra/pipeline.yaml")
    s3, tag = aws("s3"), marker()

    # ingest-api -> stream -> archive: two requests, eight events.
    key = aws("apigateway").get_api_key(apiKey=outputs["IngestApiKeyId"], includeValue=True)["value"]
    api = {"url": f"{ENDPOINT}/_aws/execute-api/{outputs['IngestApiId']}/{outputs['IngestApiStageName']}/events",
           "key": key}
    events = [
        {"player_id": f"player-{i % 3:06d}", "event_type": ["login", "match_start", "logout"][i % 3],
         "session_id": f"s-{tag}-{i // 4}", "ts": 1_700_000_000_000 + i, "platform": "web", "run": tag, "seq": i}
        for i in range(8)
    ]
    for chunk in (events[:5], events[5:]):
        status, answer = post(api, ndjson(chunk), {"Content-Type": "application/x-ndjson"})
        assert (status, answer) == (202, {"accepted": len(chunk)})

    # avro-converter: one framed snappy NDJSON file over three hours, and one record it rejects.
    records = []
    for offset, count in AVRO_HOURS.items():
        records += [player_event(len(records) + i, START_MS + offset * HOUR_MS + i * 1_000) for i in range(count)]
    bad = dict(records[0], bitrate_kbps="high")
    input_key = f"{outputs['AvroInputPrefix']}catalog/{tag}/events-{tag}.json.snappy"
    s3.put_object(Bucket=outputs["AvroRawBucketName"], Key=input_key, Body=framed_snappy(ndjson(records + [bad])))

    out_bucket = outputs["AvroOutputBucketName"]
    avro_keys = wait_until(
        lambda: len(k := [x for x in layout.list_keys(s3, out_bucket, outputs["AvroOutputPrefix"])
                          if x.endswith(".avro")]) >= len(AVRO_HOURS) and k,
        timeout=120, message="three Avro files",
    )
    error_keys = wait_until(lambda: layout.list_keys(s3, out_bucket, outputs["AvroErrorPrefix"]),
                            timeout=60, message="the rejects file")

    stream = [r for r in stream_records(aws, outputs["EventStreamName"]) if tag.encode() in r["Data"]]
    assert len(stream) == len(events)
    archive_bucket = outputs["ArchiveBucketName"]

    def archived_lines():
        total = 0
        for k in layout.list_keys(s3, archive_bucket, ""):
            total += len(layout.json_rows(k, s3.get_object(Bucket=archive_bucket, Key=k)["Body"].read()))
        return total == len(events) and total

    wait_until(archived_lines, timeout=120, message=f"{len(events)} archived lines")
    yield {
        "outputs": outputs,
        "s3": s3,
        "avro_keys": avro_keys,
        "error_keys": error_keys,
        "avro_per_hour": {hour_of(START_MS + o * HOUR_MS): n for o, n in AVRO_HOURS.items()},
        "archive_per_hour": Counter(r["ApproximateArrivalTimestamp"].astimezone(timezone.utc)
                                    .replace(minute=0, second=0, microsecond=0) for r in stream),
        "archive_keys": layout.list_keys(s3, archive_bucket, ""),
    }
    empty_buckets(s3, [v for k, v in outputs.items() if k.endswith("BucketName")])


def empty_buckets(s3, buckets):
    """Every version of every object, so the stack's buckets can be deleted with it."""
    for bucket in buckets:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                      for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            if doomed:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed})


@pytest.fixture(scope="module")
def catalog(run):
    template, tables, values = layout.template_and_values(run["outputs"])
    return {"template": template, "tables": tables, "values": values}


def test_localstack_deploy_has_the_catalog_switched_off(run, catalog):
    assert "EnableCatalog" in catalog["template"]["Parameters"]
    assert "CatalogDatabaseName" not in run["outputs"], "LocalStack community cannot create a Glue database"
    assert set(catalog["tables"]) == {"player_events_avro", "player_events_archive", "counter_totals"}


def test_every_file_the_run_wrote_lies_under_a_projected_location(run, catalog):
    values, tables = catalog["values"], catalog["tables"]
    avro = tables["player_events_avro"]
    locations = {hour: layout.projected_location(avro, values, hour) for hour in run["avro_per_hour"]}
    bucket, prefix = run["outputs"]["AvroOutputBucketName"], run["outputs"]["AvroOutputPrefix"]
    assert locations[hour_of(START_MS)] == f"s3://{bucket}/{prefix}year=2025/month=12/day=31/hour=22/"
    for key in run["avro_keys"]:
        uri = f"s3://{bucket}/{key}"
        assert [h for h, loc in locations.items() if uri.startswith(loc)], f"{uri} is under no projected location"
    for hour, location in locations.items():
        assert [k for k in run["avro_keys"] if f"s3://{bucket}/{k}".startswith(location)], f"nothing at {location}"
    for key in run["error_keys"]:  # rejects must never be read as table rows
        uri = f"s3://{bucket}/{key}"
        assert not uri.startswith(layout.resolve(avro.location, values)), uri

    archive = tables["player_events_archive"]
    arch_locations = [layout.projected_location(archive, values, hour) for hour in run["archive_per_hour"]]
    assert run["archive_keys"]
    for key in run["archive_keys"]:
        uri = f"s3://{run['outputs']['ArchiveBucketName']}/{key}"
        assert any(uri.startswith(loc) for loc in arch_locations), f"{uri} is under none of {arch_locations}"

    totals = tables["counter_totals"]
    day = datetime(2026, 12, 3, tzinfo=timezone.utc)
    assert layout.projected_location(totals, values, day) == (
        f"s3://{run['outputs']['CounterTotalsBucketName']}/{run['outputs']['CounterTotalsPrefix']}2026-12-03/"
    ), "counter-reporter writes <CounterTotalsPrefix><YYYY-MM-DD>/totals.jsonl"


def test_avro_writer_schema_matches_the_table_columns(run, catalog):
    avro = catalog["tables"]["player_events_avro"]
    literal = json.loads(avro.serde_parameters["avro.schema.literal"])
    data = layout.load_table(run["s3"], avro, catalog["values"])
    assert len(data.writer_schemas) == len(AVRO_HOURS)
    for uri, schema in data.writer_schemas.items():
        got = [(c["Name"], c["Type"]) for c in glue_schema.columns(schema)]
        assert got == avro.columns, f"{uri}: writer schema columns differ from the table's"
        nullable = {f["name"]: glue_schema.is_nullable(f["type"]) for f in schema["fields"]}
        declared = {f["name"]: glue_schema.is_nullable(f["type"]) for f in literal["fields"]}
        assert nullable == declared, f"{uri}: nullability differs from avro.schema.literal"
        assert not nullable["PTS"] and nullable["user_id"]


def test_sql_over_the_partitions_counts_every_input_per_hour(run, catalog):
    tables, values = catalog["tables"], catalog["values"]
    data = {name: layout.load_table(run["s3"], tables[name], values)
            for name in ("player_events_avro", "player_events_archive")}
    for name, d in data.items():
        assert d.outside == [], f"{name}: objects no projected path matches: {d.outside}"
    ctx = layout.sql_context(data)

    avro = ctx.execute(layout.AVRO_EVENTS_PER_HOUR)
    got = {datetime(r["year"], r["month"], r["day"], r["hour"], tzinfo=timezone.utc): r["events"]
           for r in avro.iter_rows(named=True)}
    assert got == run["avro_per_hour"]

    archive = ctx.execute(layout.ARCHIVE_EVENTS_PER_HOUR)
    got = {datetime.strptime(r["arrival_hour"], "%Y%m%d%H").replace(tzinfo=timezone.utc): r["events"]
           for r in archive.iter_rows(named=True)}
    assert got == dict(run["archive_per_hour"])
    # the partition columns came from the path and agree with the server's receive time
    rows = ctx.execute("SELECT year, month, received_at, request_id, player_id FROM player_events_archive")
    assert rows.height == sum(run["archive_per_hour"].values())
    for r in rows.iter_rows(named=True):
        received = datetime.fromtimestamp(r["received_at"] / 1000, timezone.utc)
        assert (r["year"], r["month"]) == (received.year, received.month)
        assert r["request_id"] and r["player_id"].startswith("player-")


def test_query_tool_prints_the_same_counts(run):
    lines = []
    results = sluice_query.run(run["outputs"], run["s3"], layout.TEMPLATE, None, out=lines.append)
    per_hour = {datetime(r["year"], r["month"], r["day"], r["hour"], tzinfo=timezone.utc): r["events"]
                for r in results["avro_per_hour"].iter_rows(named=True)}
    assert per_hour == run["avro_per_hour"]
    assert sum(results["archive_per_hour"]["events"]) == sum(run["archive_per_hour"].values())
    assert "day_totals" not in results and "\ncounter_totals: no snapshots yet" in [x for x in lines if isinstance(x, str)]
