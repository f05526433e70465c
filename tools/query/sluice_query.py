#!/usr/bin/env python3
"""Query a deployed stack's outputs with SQL, laid out as its Glue tables (no Athena needed).

    python tools/query/sluice_query.py --outputs ~/.cache/sluice/demo/outputs.json [--date YYYY-MM-DD]
                                       [--template infra/pipeline.yaml] [--endpoint-url URL | --aws]

Downloads the objects under each table's location (the Avro files, the bzip2 archive and, when
the stack has a totals bucket holding snapshots, the counter totals), reads them with the
partition columns their paths give (tools/query/catalog_layout.py, the same code the end-to-end
test uses), and prints with Polars SQL: events per hour from the Avro table and from the
archive, and the day's counter totals (the newest snapshot day, or --date).
Talks to LocalStack by default (http://localhost:$SLUICE_LOCALSTACK_PORT, test credentials).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import boto3
import polars as pl
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))

import catalog_layout as layout  # noqa: E402


def s3_client(endpoint_url: str | None):
    if endpoint_url is None:
        return boto3.client("s3")
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5}),
    )


def run(outputs: dict[str, str], s3, template_path: Path, day: str | None, out=print) -> dict[str, pl.DataFrame]:
    template, tables, values = layout.template_and_values(outputs, template_path)
    wanted = {"player_events_avro": "AvroOutputBucketName", "player_events_archive": "ArchiveBucketName",
              "counter_totals": "CounterTotalsBucketName"}
    data = {}
    for name, bucket_output in wanted.items():
        if name not in tables:
            out(f"(the template has no table {name})")
            continue
        if bucket_output not in outputs:
            out(f"(stack has no {bucket_output}: table {name} skipped)")
            continue
        data[name] = layout.load_table(s3, tables[name], values)
        location = layout.resolve(tables[name].location, values)
        out(f"{name}: {len(data[name].files)} files, {data[name].frame.height} rows under {location}")
    ctx = layout.sql_context(data)
    results = {}
    pl.Config.set_tbl_rows(50)
    if "player_events_avro" in data:
        results["avro_per_hour"] = ctx.execute(layout.AVRO_EVENTS_PER_HOUR)
        out("\nEvents per UTC hour of event time (player_events_avro):")
        out(results["avro_per_hour"])
    if "player_events_archive" in data:
        results["archive_per_hour"] = ctx.execute(layout.ARCHIVE_EVENTS_PER_HOUR)
        out("\nEvents per UTC hour of arrival (player_events_archive):")
        out(results["archive_per_hour"])
    totals = data.get("counter_totals")
    if totals is not None and totals.frame.height:
        day = day or str(totals.frame["date"].max())
        results["day_totals"] = ctx.execute(layout.DAY_TOTALS.format(day=day))
        out(f"\nCounter totals on {day} (counter_totals):")
        out(results["day_totals"])
    elif totals is not None:
        out("\ncounter_totals: no snapshots yet")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", type=Path, required=True, help="the stack outputs as JSON (infra/deploy.py --json)")
    parser.add_argument("--template", type=Path, default=layout.TEMPLATE)
    parser.add_argument("--date", help="day of the counter totals (default: the newest snapshot)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--endpoint-url", help="S3 endpoint (default LocalStack)")
    target.add_argument("--aws", action="store_true", help="real AWS with the default credential chain")
    args = parser.parse_args(argv)
    endpoint = None if args.aws else (
        args.endpoint_url or f"http://localhost:{os.environ.get('SLUICE_LOCALSTACK_PORT') or 4566}")
    try:
        outputs = json.loads(args.outputs.read_text())
        run(outputs, s3_client(endpoint), args.template, args.date)
    except (OSError, ValueError, layout.LayoutError) as e:
        print(f"sluice_query: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
