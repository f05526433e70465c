#!/usr/bin/env python3
"""sluice's load model: what a rate of player events needs and costs per day (docs/SCALE.md).

    python tools/load/scale_model.py [--rates 1000,10000,100000] [--instances 100,1000,10000]
                                     [--record-bytes B] [--per-request P] [--file-events F]
                                     [--markdown | --write docs/SCALE.md]

Every figure is a formula over the inputs below (docs/SCALE.md writes each one out): the
rates you expect, the sizes of your events, and the per-invocation figures of a `just bench`
run (``BENCH``; the run is named in docs/PERFORMANCE.md's generated section). Change an input
with a flag, or edit ``BENCH``/``PRICES`` after your own `just bench` and a look at the
current pricing pages. ``--markdown`` prints the tables docs/SCALE.md holds; ``--write FILE``
rewrites them between its ``scale:begin``/``scale:end`` markers.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

# Per-invocation figures from `just bench`, run 2026-11-22 01:08 UTC (docs/PERFORMANCE.md,
# sections 1, 3-6): 2 vCPU AMD EPYC, Rust 1.95, release code.
BENCH = {
    "archiver_ms_per_mib_1vcpu": 365.6 / 5.0,  # bzip2 -9 path, 5.0 MiB batch, 1 core
    "archiver_ms_per_mib_2vcpu": 224.0 / 5.0,  # compress_parallel, 2 cores
    "converter_ms_per_100k_events": 592.7,  # whole invocation, 56 MB JSON as 10.8 MB snappy via S3 (stub)
    "converter_peak_mib_per_100k_events": 83.7,
    "counter_file_ms": 1.3,  # parse + sums of one 100-counter file
    "small_event_ms": 3.2,  # exec -> first response, small events (ingest-api's 400)
}

# Measured by `just load` on LocalStack (docs/SCALE.md, "Measured here"): bytes of one archived
# record (the client's event + received_at + request_id) and the archive's bzip2 ratio.
MEASURED = {
    "record_bytes": 587,  # 586.9 at 200 events/s, 2026-12-07 (docs/SCALE.md, "Measured here")
    "bzip2_ratio": 0.098,  # archive bzip2 bytes / raw bytes, the same run
}

# Latencies of the AWS calls a function waits on; assumptions, not measured here (LocalStack's
# latencies say nothing about AWS's). Change them to what your X-Ray traces show.
ASSUMED = {
    "put_records_ms": 30.0,  # one PutRecords of <= 500 records
    "s3_put_ms": 60.0,  # one PutObject of an archive or Avro object
    "s3_get_ms_per_mib": 15.0,
    "dynamodb_write_ms": 6.0,  # one UpdateItem
    "mapper_concurrent_updates": 16,  # counter-mapper's MAX_CONCURRENT_UPDATES default
}

# us-east-1 list prices (2026); check the pricing pages before deciding.
PRICES = {
    "lambda_gb_s_x86": 0.0000166667,
    "lambda_gb_s_arm64": 0.0000133334,
    "lambda_request": 0.20 / 1e6,
    "apigw_rest_request": 3.50 / 1e6,
    "kinesis_shard_hour": 0.015,
    "kinesis_put_unit": 0.014 / 1e6,  # per 25 KB payload unit (provisioned)
    "kinesis_od_stream_hour": 0.04,
    "kinesis_od_gb_in": 0.08,  # records rounded up to 1 KB
    "kinesis_od_gb_out": 0.04,  # records rounded up to 1 KB
    "s3_put": 0.005 / 1000,
    "s3_gb_month": 0.023,
    "dynamodb_wru": 0.625 / 1e6,  # on-demand write request unit (per KB written)
    "dynamodb_rru": 0.125 / 1e6,
    "firehose_gb": 0.029,  # Direct PUT, each record rounded up to 5 KB
    "firehose_format_conversion_gb": 0.018,
}

DAY = 86_400
MIB = 1024 * 1024
# Lambda settings from infra/pipeline.yaml.
INGEST_MEMORY_GB = 256 / 1024
ARCHIVER_MEMORY_GB = 3538 / 1024
CONVERTER_MEMORY_GB = 1024 / 1024
MAPPER_MEMORY_GB = 256 / 1024
ARCHIVER_BATCH = 1000
ARCHIVER_WINDOW_S = 5
SHARD_RECORDS_S = 1000
SHARD_BYTES_S = 1 * MIB
ON_DEMAND_MAX_RECORDS_S = 200_000  # per-stream on-demand write quota (default)
HEADROOM = 1.5  # shards over the minimum: hash ranges are uneven and peaks exceed the mean
COUNTERS_PER_FILE = 100
UPLOAD_EVERY_S = 60
INSTANCE_SHARDS = 32  # sluice_counters::SHARDS
ENTRY_BYTES = 70  # an EC2 id (19), a 9-digit value, a 32-character stamp: sluice_counters::entry_size
ITEM_OVERHEAD_BYTES = 80  # Counter, Date, Version, the map itself


def ingest_path(rate: float, record_bytes: int, per_request: int) -> dict:
    """API Gateway -> ingest-api -> Kinesis -> kinesis-archiver -> S3, per second and per day."""
    requests_s = rate / per_request
    put_calls = math.ceil(per_request / 500)
    ingest_s = (BENCH["small_event_ms"] + put_calls * ASSUMED["put_records_ms"]) / 1000
    bytes_s = rate * record_bytes
    shards_min = max(rate / SHARD_RECORDS_S, bytes_s / SHARD_BYTES_S)
    shards = max(1, math.ceil(shards_min * HEADROOM))
    per_shard = rate / shards
    # A shard's batch is full (ARCHIVER_BATCH records) or the window ends, whichever is first.
    batch_records = min(ARCHIVER_BATCH, per_shard * ARCHIVER_WINDOW_S)
    invocations_s = rate / batch_records
    batch_mib = batch_records * record_bytes / MIB
    archiver_s = (batch_mib * BENCH["archiver_ms_per_mib_2vcpu"] + ASSUMED["s3_put_ms"]) / 1000
    objects_hour = invocations_s * 3600  # one object per invocation (two when a batch spans an hour)
    object_bytes = batch_records * record_bytes * MEASURED["bzip2_ratio"]
    gb_day = bytes_s * DAY / 1e9
    kb_records_gb_day = rate * DAY * max(1, math.ceil(record_bytes / 1024)) * 1024 / 1e9

    cost = {
        "API Gateway": requests_s * DAY * PRICES["apigw_rest_request"],
        "ingest-api": requests_s * DAY * (ingest_s * INGEST_MEMORY_GB * PRICES["lambda_gb_s_x86"] + PRICES["lambda_request"]),
        "Kinesis provisioned": shards * 24 * PRICES["kinesis_shard_hour"] + rate * DAY * PRICES["kinesis_put_unit"],
        "Kinesis on-demand": 24 * PRICES["kinesis_od_stream_hour"]
        + kb_records_gb_day * (PRICES["kinesis_od_gb_in"] + PRICES["kinesis_od_gb_out"]),
        "kinesis-archiver": invocations_s * DAY * (archiver_s * ARCHIVER_MEMORY_GB * PRICES["lambda_gb_s_x86"] + PRICES["lambda_request"]),
        "S3 PUTs (archive)": objects_hour * 24 * PRICES["s3_put"],
    }
    firehose = {
        "Firehose, one event per record (5 KB rounding)": rate * DAY * 5 * 1024 / 1e9 * PRICES["firehose_gb"],
        "Firehose, events batched >= 5 KB per record": gb_day * PRICES["firehose_gb"],
    }
    return {
        "rate": rate,
        "requests_s": requests_s,
        "mb_s": bytes_s / 1e6,
        "gb_day": gb_day,
        "shards_min": shards_min,
        "shards": shards,
        "on_demand_fits": rate <= ON_DEMAND_MAX_RECORDS_S,
        "ingest_ms": ingest_s * 1000,
        "ingest_concurrency": requests_s * ingest_s,
        "archiver_batch_records": batch_records,
        "archiver_invocations_s": invocations_s,
        "archiver_ms": archiver_s * 1000,
        "archiver_concurrency": invocations_s * archiver_s,
        "archive_objects_hour": objects_hour,
        "archive_object_kb": object_bytes / 1024,
        "archive_gb_day": gb_day * MEASURED["bzip2_ratio"],
        "archive_storage_month": gb_day * MEASURED["bzip2_ratio"] * PRICES["s3_gb_month"],
        "cost": cost,
        "firehose": firehose,
    }


def converter_path(rate: float, record_bytes: int, file_events: int) -> dict:
    """The same events arriving as snappy JSON files of ``file_events`` events -> Avro."""
    files_s = rate / file_events
    scale = file_events / 100_000
    seconds = (BENCH["converter_ms_per_100k_events"] * scale + ASSUMED["s3_put_ms"]) / 1000
    return {
        "files_s": files_s,
        "avro_objects_hour": files_s * 3600,  # one per input and hour it spans (two at an hour's edge)
        "converter_ms": seconds * 1000,
        "converter_concurrency": files_s * seconds,
        "peak_mib": BENCH["converter_peak_mib_per_100k_events"] * max(scale, 0.15),
        "cost": files_s * DAY * (seconds * CONVERTER_MEMORY_GB * PRICES["lambda_gb_s_x86"] + PRICES["lambda_request"]),
    }


def counters_path(instances: int) -> dict:
    """Each instance uploads a file of COUNTERS_PER_FILE counters every UPLOAD_EVERY_S seconds."""
    files_s = instances / UPLOAD_EVERY_S
    writes_s = files_s * COUNTERS_PER_FILE  # every counter of every upload: its stamp advances
    item_bytes = ITEM_OVERHEAD_BYTES + math.ceil(instances / INSTANCE_SHARDS) * ENTRY_BYTES
    wru_per_write = math.ceil(item_bytes / 1024)  # an update costs the larger of the item before and after
    # All of a counter's shard items share its partition key: one partition's 1,000 WRU/s.
    partition_wru_s = files_s * wru_per_write
    mapper_s = (BENCH["counter_file_ms"] + COUNTERS_PER_FILE / ASSUMED["mapper_concurrent_updates"] * ASSUMED["dynamodb_write_ms"]) / 1000
    # The aggregator: per batch one read and one write per counter touched; about one batch
    # per second per stream shard, each touching every counter.
    aggregate_writes_s = COUNTERS_PER_FILE * 1.0
    cost = {
        "counter-mapper": files_s * DAY * (mapper_s * MAPPER_MEMORY_GB * PRICES["lambda_gb_s_x86"] + PRICES["lambda_request"]),
        "instance table writes": writes_s * wru_per_write * DAY * PRICES["dynamodb_wru"],
        "aggregate table": aggregate_writes_s * DAY * (2 * PRICES["dynamodb_wru"] + PRICES["dynamodb_rru"]),
    }
    return {
        "instances": instances,
        "files_s": files_s,
        "writes_s": writes_s,
        "item_kb": item_bytes / 1024,
        "wru_per_write": wru_per_write,
        "wru_s": writes_s * wru_per_write,
        "partition_wru_s": partition_wru_s,
        "mapper_concurrency": files_s * mapper_s,
        "cost": cost,
    }


def money(x: float) -> str:
    return f"${x:,.2f}" if x >= 0.01 else f"${x:.4f}"


def n(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def tables(rates: list[float], instances: list[int], record_bytes: int, per_request: int, file_events: int) -> str:
    paths = [ingest_path(r, record_bytes, per_request) for r in rates]
    conv = [converter_path(r, record_bytes, file_events) for r in rates]
    head = "| | " + " | ".join(f"{n(r)} events/s" for r in rates) + " |\n|---|" + "---|" * len(rates) + "\n"

    def row(name, values):
        return f"| {name} | " + " | ".join(values) + " |\n"

    out = "#### Ingest and archive\n\n" + head
    out += row("events per day", [n(p["rate"] * DAY / 1e6, 1) + " M" for p in paths])
    out += row(f"requests/s ({per_request} events each)", [n(p["requests_s"], 1) for p in paths])
    out += row("stream write MB/s", [n(p["mb_s"], 2) for p in paths])
    out += row("provisioned shards: minimum / with 1.5x headroom",
               [f"{n(p['shards_min'], 1)} / {p['shards']}" for p in paths])
    out += row("on-demand within its default 200,000 records/s", ["yes" if p["on_demand_fits"] else "no" for p in paths])
    out += row("ingest-api: ms per request / concurrency", [f"{n(p['ingest_ms'], 1)} / {n(p['ingest_concurrency'], 1)}" for p in paths])
    out += row("archiver: records per batch / invocations/s",
               [f"{n(p['archiver_batch_records'])} / {n(p['archiver_invocations_s'], 2)}" for p in paths])
    out += row("archiver: ms per invocation / concurrency",
               [f"{n(p['archiver_ms'])} / {n(p['archiver_concurrency'], 2)}" for p in paths])
    out += row("archive objects per hour / KB each", [f"{n(p['archive_objects_hour'])} / {n(p['archive_object_kb'])}" for p in paths])
    out += row("archive GB per day (bzip2) / S3 storage of one day's archive, per month",
               [f"{n(p['archive_gb_day'], 2)} / {money(p['archive_storage_month'])}" for p in paths])
    out += row("**cost per day** (storage aside)", ["" for _ in paths])
    for name in paths[0]["cost"]:
        out += row(name, [money(p["cost"][name]) for p in paths])
    total_prov = [sum(v for k, v in p["cost"].items() if k != "Kinesis on-demand") for p in paths]
    total_od = [sum(v for k, v in p["cost"].items() if k != "Kinesis provisioned") for p in paths]
    out += row("**sluice, provisioned stream**", [f"**{money(t)}**" for t in total_prov])
    out += row("**sluice, on-demand stream**", [f"**{money(t)}**" for t in total_od])
    replaced = [p["cost"]["Kinesis provisioned"] + p["cost"]["kinesis-archiver"] + p["cost"]["S3 PUTs (archive)"] for p in paths]
    out += row("what Firehose would replace: provisioned stream + archiver + PUTs", [money(t) for t in replaced])
    for name in paths[0]["firehose"]:
        out += row(f"{name} (replaces stream and archiver; gzip, not bzip2)", [money(p["firehose"][name]) for p in paths])

    out += f"\n#### The same events as snappy JSON files of {n(file_events)} events -> Avro\n\n" + head
    out += row("input files/s", [n(c["files_s"], 2) for c in conv])
    out += row("Avro objects per hour", [n(c["avro_objects_hour"]) for c in conv])
    out += row("ms per file / concurrency", [f"{n(c['converter_ms'])} / {n(c['converter_concurrency'], 2)}" for c in conv])
    out += row("peak memory per invocation (MiB)", [n(c["peak_mib"]) for c in conv])
    out += row("avro-converter cost per day", [money(c["cost"]) for c in conv])

    counters = [counters_path(i) for i in instances]
    out += (f"\n#### Counters: {COUNTERS_PER_FILE} counters per instance, one upload every {UPLOAD_EVERY_S} s\n\n"
            "| | " + " | ".join(f"{n(i)} instances" for i in instances) + " |\n|---|" + "---|" * len(instances) + "\n")
    out += row("counter files/s (mapper invocations)", [n(c["files_s"], 1) for c in counters])
    out += row("instance-table writes/s", [n(c["writes_s"]) for c in counters])
    out += row("shard item size (KB) / write units per write", [f"{n(c['item_kb'], 1)} / {c['wru_per_write']}" for c in counters])
    out += row("write units/s, all / on one counter's partition key", [f"{n(c['wru_s'])} / {n(c['partition_wru_s'])}" for c in counters])
    out += row("counter-mapper concurrency", [n(c["mapper_concurrency"], 2) for c in counters])
    for name in counters[0]["cost"]:
        out += row(f"{name} cost per day", [money(c["cost"][name]) for c in counters])
    out += row("**counters, cost per day**", [f"**{money(sum(c['cost'].values()))}**" for c in counters])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="1000,10000,100000", help="events per second, comma-separated")
    p.add_argument("--instances", default="100,1000,10000", help="counter-reporting instances, comma-separated")
    p.add_argument("--record-bytes", type=int, default=MEASURED["record_bytes"], help="bytes of one stream record")
    p.add_argument("--per-request", type=int, default=100, help="events per POST /events")
    p.add_argument("--file-events", type=int, default=100_000, help="events per converter input file")
    p.add_argument("--markdown", action="store_true", help="only the tables (docs/SCALE.md)")
    p.add_argument("--write", metavar="FILE", help="rewrite FILE's tables between its scale: markers")
    args = p.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    instances = [int(i) for i in args.instances.split(",")]
    text = tables(rates, instances, args.record_bytes, args.per_request, args.file_events)
    if args.write:
        path = Path(args.write)
        doc = path.read_text()
        pattern = re.compile(r"(<!-- scale:begin[^>]*-->\n).*?(<!-- scale:end -->)", re.S)
        if not pattern.search(doc):
            raise SystemExit(f"{path}: no scale:begin/scale:end markers")
        path.write_text(pattern.sub(lambda m: m.group(1) + "\n" + text + "\n" + m.group(2), doc))
        return 0
    if not args.markdown:
        print(f"inputs: record {args.record_bytes} B, {args.per_request} events/request, bench {BENCH}, "
              f"measured {MEASURED}, assumed {ASSUMED}\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
