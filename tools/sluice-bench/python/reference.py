"""Reference Python implementations of the seeds' compute paths, written for `just bench`.

Each is what a Python Lambda of the seed would do with the object/batch already in memory
(no S3, no boto3): the same inputs the Rust side reads (see tools/sluice-bench/run.py), timed the same way
(one warm-up run, then the median of N). Printed as one JSON object per line.

* converter (seed 000): snappy-framed NDJSON → decompress → json.loads per line → group by
  UTC hour of `PTS` → one snappy-codec Avro container file per hour, with the `avro` package
  (as the seed) and with `fastavro`.
* archiver (seed 004): Kinesis event JSON → base64-decode each record → "\n".join → bz2 -9.
* counters (seed 003): 100 files of `COUNTER VALUE` lines → parse (skip blank/malformed) →
  per-counter sums.
"""

import base64
import bz2
import datetime
import io
import json
import statistics
import sys
import time
from pathlib import Path

import avro.datafile
import avro.io
import avro.schema
import cramjam
import fastavro

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "functions/avro-converter/schema/player_event.avsc"


def timed(repeats, fn):
    fn()
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def emit(name, secs, nbytes, items):
    print(json.dumps({"name": name, "secs": secs, "bytes": nbytes, "items": items,
                      "mb_per_s": nbytes / 1e6 / secs}), flush=True)


def hour_of(event):
    ts = datetime.datetime.fromtimestamp(int(event["PTS"]) / 1e3, tz=datetime.timezone.utc)
    return f"year={ts:%Y}/month={ts:%m}/day={ts:%d}/hour={ts:%H}"


def decode_events(compressed):
    text = bytes(cramjam.snappy.decompress(compressed))
    by_hour = {}
    for line in text.splitlines():
        if line.strip():
            event = json.loads(line)
            by_hour.setdefault(hour_of(event), []).append(event)
    return by_hour


def convert_avro(compressed, schema):
    out = {}
    for hour, events in decode_events(compressed).items():
        buf = io.BytesIO()
        writer = avro.datafile.DataFileWriter(buf, avro.io.DatumWriter(), schema, codec="snappy")
        for event in events:
            writer.append(event)
        writer.flush()
        out[hour] = buf.getvalue()
        writer.close()
    return out


def convert_fastavro(compressed, schema):
    out = {}
    for hour, events in decode_events(compressed).items():
        buf = io.BytesIO()
        fastavro.writer(buf, schema, events, codec="snappy")
        out[hour] = buf.getvalue()
    return out


def archive(event_bytes):
    event = json.loads(event_bytes)
    data = [base64.b64decode(r["kinesis"]["data"]) for r in event["Records"]]
    return bz2.compress(b"\n".join(data) + b"\n", 9)


def sum_counters(files):
    totals = {}
    for body in files:
        for line in body.splitlines():
            fields = line.split()
            if len(fields) != 2:
                continue
            try:
                value = int(fields[1])
            except ValueError:
                continue
            counter = fields[0].decode()
            totals[counter] = totals.get(counter, 0) + value
    return totals


def main():
    data = Path(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    avsc = SCHEMA_PATH.read_text()

    compressed = (data / "player.ndjson.snappy").read_bytes()
    json_bytes = (data / "player.ndjson").stat().st_size
    records = sum(len(v) for v in decode_events(compressed).values())
    fast_schema = fastavro.parse_schema(json.loads(avsc))
    emit("converter_fastavro", timed(repeats, lambda: convert_fastavro(compressed, fast_schema)),
         json_bytes, records)
    # The `avro` package is ~100x slower; one measured run is enough to see it.
    avro_schema = avro.schema.parse(avsc)
    started = time.perf_counter()
    convert_avro(compressed, avro_schema)
    emit("converter_avro", time.perf_counter() - started, json_bytes, records)
    emit("snappy_decompress_cramjam",
         timed(repeats, lambda: cramjam.snappy.decompress(compressed)), json_bytes, 1)

    event_bytes = (data / "kinesis-event.json").read_bytes()
    lines = (data / "kinesis-lines.ndjson").read_bytes()
    count = len(json.loads(event_bytes)["Records"])
    emit("archiver", timed(repeats, lambda: archive(event_bytes)), len(lines), count)
    emit("bzip2_compress_python_bz2", timed(repeats, lambda: bz2.compress(lines, 9)), len(lines), 1)

    files = [(data / "counters" / f"values_i-{i:08x}").read_bytes() for i in range(100)]
    totals = sum_counters(files)
    print(json.dumps({"counter_check": {"counters": len(totals), "grand_total": sum(totals.values())}}))
    emit("counters_100x100", timed(repeats * 10, lambda: sum_counters(files)),
         sum(map(len, files)), 10_000)


if __name__ == "__main__":
    main()
