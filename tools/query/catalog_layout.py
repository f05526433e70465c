"""The stack's Glue tables as infra/pipeline.yaml declares them, applied to objects in S3.

Everything comes from the template text: a table's location and `storage.location.template`
(`!Sub` strings, resolved with the stack outputs and the parameter defaults), its partition keys
and projection properties, its columns and SerDe. From those:

- `projected_location(table, values, when)`: the S3 location Athena's projection enumerates for
  an hour (integer projections named year/month/day/hour, date projections by their format);
- `partition_of(table, values, uri)`: the partition values of an object, read from its path;
- `load_tables(...)`: every object under each table's location, read as the SerDe reads it
  (Avro container files; JSON lines, bzip2 by extension) into one Polars frame per table, with
  the partition columns from the path and Athena's `$path` pseudo-column;
- the SQL the query tool and the end-to-end test run over those frames with `pl.SQLContext`.

Used by tools/query/sluice_query.py and tests/e2e/test_catalog.py (one copy of the layout rules).
"""

from __future__ import annotations

import bz2
import io
import json
import re
import sys
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import fastavro
import polars as pl

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "infra" / "pipeline.yaml"
sys.path.insert(0, str(REPO / "infra"))

from check_security import load_template  # noqa: E402  (CloudFormation tags -> long form)

AVRO_SERDE = "org.apache.hadoop.hive.serde2.avro.AvroSerDe"
JSON_SERDE = "org.openx.data.jsonserde.JsonSerDe"

# Per-hour counts over the frames (the named queries of the template, without their
# "today"/"this month" partition filters: the frames hold exactly the objects read).
AVRO_EVENTS_PER_HOUR = """
SELECT year, month, day, hour, count(*) AS events
FROM player_events_avro
GROUP BY year, month, day, hour
ORDER BY year, month, day, hour
"""
ARCHIVE_EVENTS_PER_HOUR = """
SELECT substr(split_part("$path", 'player_events.', 2), 1, 10) AS arrival_hour, count(*) AS events
FROM player_events_archive
GROUP BY 1
ORDER BY 1
"""
DAY_TOTALS = """
SELECT counter, total, version, updated_at
FROM counter_totals
WHERE "date" = DATE '{day}'
ORDER BY counter
"""

POLARS_TYPES = {
    "string": pl.Utf8,
    "int": pl.Int32,
    "bigint": pl.Int64,
    "float": pl.Float32,
    "double": pl.Float64,
    "boolean": pl.Boolean,
    "binary": pl.Binary,
    "date": pl.Date,
    "timestamp": pl.Datetime("ms"),
}
# Java DateTimeFormatter letters used by date projections -> strftime.
JAVA_DATE = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H"}


class LayoutError(ValueError):
    pass


@dataclass
class CatalogTable:
    logical_id: str
    name: str
    location: object  # the Fn::Sub value
    location_template: object
    partition_keys: list[tuple[str, str]]
    columns: list[tuple[str, str]]
    parameters: dict
    serde: str
    serde_parameters: dict


def catalog_tables(template: dict) -> dict[str, CatalogTable]:
    """Every AWS::Glue::Table of the template, by table name."""
    tables = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Glue::Table":
            continue
        table = resource["Properties"]["TableInput"]
        descriptor = table["StorageDescriptor"]
        params = table.get("Parameters", {})
        tables[table["Name"]] = CatalogTable(
            logical_id=logical_id,
            name=table["Name"],
            location=descriptor["Location"],
            location_template=params.get("storage.location.template"),
            partition_keys=[(k["Name"], k["Type"]) for k in table.get("PartitionKeys", [])],
            columns=[(c["Name"], c["Type"]) for c in descriptor.get("Columns", [])],
            parameters=params,
            serde=descriptor["SerdeInfo"]["SerializationLibrary"],
            serde_parameters=descriptor["SerdeInfo"].get("Parameters", {}),
        )
    return tables


# --- !Sub resolution -------------------------------------------------------------------

_VAR = re.compile(r"\$\{(!?)([A-Za-z0-9_:.]+)\}")


def _sub_text(value) -> str:
    if isinstance(value, dict) and "Fn::Sub" in value:
        value = value["Fn::Sub"]
        if isinstance(value, list):
            if value[1]:
                raise LayoutError(f"!Sub with a variable map is not supported here: {value}")
            value = value[0]
    if not isinstance(value, str):
        raise LayoutError(f"expected a string or !Sub, found {value!r}")
    return value


def stack_values(template: dict, outputs: dict[str, str]) -> dict[str, str]:
    """What `${Name}` means in this stack: parameter defaults, then the outputs — an output
    `!Ref X` gives X, an output `!Sub "...${X}..."` gives X by matching its value."""
    values = {
        name: str(p["Default"]) for name, p in template.get("Parameters", {}).items() if "Default" in p
    }
    for key, output in template.get("Outputs", {}).items():
        if key not in outputs:
            continue
        value = output.get("Value")
        if isinstance(value, dict) and "Ref" in value:
            values[value["Ref"]] = outputs[key]
    for key, output in template.get("Outputs", {}).items():
        value = output.get("Value")
        if key not in outputs or not (isinstance(value, dict) and "Fn::Sub" in value):
            continue
        text, pattern, names = _sub_text(value), "", []
        at = 0
        for m in _VAR.finditer(text):
            pattern += re.escape(text[at : m.start()])
            if m.group(1) or m.group(2) in names:
                pattern += re.escape(m.group(0).replace("${!", "${"))
            elif m.group(2) in values and m.group(2) not in template.get("Parameters", {}):
                pattern += re.escape(values[m.group(2)])  # a resource name already known
            else:
                names.append(m.group(2))
                pattern += f"(?P<v{len(names) - 1}>.*?)"
            at = m.end()
        pattern += re.escape(text[at:])
        matched = re.fullmatch(pattern, outputs[key])
        if matched:
            for i, name in enumerate(names):
                values[name] = matched.group(f"v{i}")
    return values


def resolve(value, values: dict[str, str], partition: dict[str, str] | None = None) -> str:
    """A !Sub string with the stack's values; `${!x}` (literal `${x}`) takes partition[x] if given."""
    def one(m: re.Match) -> str:
        literal, name = m.group(1), m.group(2)
        if literal:
            return partition[name] if partition is not None else "${" + name + "}"
        if name not in values:
            raise LayoutError(f"no value for ${{{name}}} (not an output of the stack nor a parameter default)")
        return values[name]

    return _VAR.sub(one, _sub_text(value))


# --- projection ------------------------------------------------------------------------


def projected_values(table: CatalogTable, values: dict[str, str], when: datetime) -> dict[str, str]:
    """The partition values (as in the S3 path) Athena's projection gives the hour `when`;
    fails if the hour lies outside a projection's range (Athena would never look there)."""
    when = when.astimezone(timezone.utc)
    p = {k: v if isinstance(v, str) else resolve(v, values) for k, v in table.parameters.items()}
    if p.get("projection.enabled") != "true":
        raise LayoutError(f"{table.name}: projection is not enabled")
    out = {}
    for name, _type in table.partition_keys:
        kind = p.get(f"projection.{name}.type")
        if kind == "integer":
            number = getattr(when, name)  # year / month / day / hour
            low, high = (int(x) for x in p[f"projection.{name}.range"].split(","))
            if not low <= number <= high:
                raise LayoutError(f"{table.name}: {name}={number} outside projection range {low},{high}")
            digits = int(p.get(f"projection.{name}.digits", "1"))
            out[name] = f"{number:0{digits}d}"
        elif kind == "date":
            fmt = p[f"projection.{name}.format"]
            for java, c in JAVA_DATE.items():
                fmt = fmt.replace(java, c)
            first, last = p[f"projection.{name}.range"].split(",")
            if when.strftime(fmt) < first or (last != "NOW" and when.strftime(fmt) > last):
                raise LayoutError(f"{table.name}: {name}={when.strftime(fmt)} outside range {first},{last}")
            out[name] = when.strftime(fmt)
        else:
            raise LayoutError(f"{table.name}: projection type {kind!r} of {name} not handled")
    return out


def projected_location(table: CatalogTable, values: dict[str, str], when: datetime) -> str:
    return resolve(table.location_template, values, projected_values(table, values, when))


def _path_pattern(table: CatalogTable, values: dict[str, str]) -> re.Pattern:
    text = resolve(table.location_template, values)  # partitions stay ${name}
    pattern, at = "", 0
    for m in re.finditer(r"\$\{([A-Za-z0-9_]+)\}", text):
        pattern += re.escape(text[at : m.start()]) + f"(?P<{m.group(1)}>[^/]+)"
        at = m.end()
    return re.compile(pattern + re.escape(text[at:]))


def partition_of(table: CatalogTable, values: dict[str, str], uri: str) -> dict | None:
    """The typed partition values of the object at `uri`, or None if it is outside every
    location the table's template describes."""
    m = _path_pattern(table, values).match(uri)
    if not m:
        return None
    out = {}
    for name, kind in table.partition_keys:
        raw = m.group(name)
        out[name] = date.fromisoformat(raw) if kind == "date" else int(raw) if kind in ("int", "bigint") else raw
    return out


def split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


# --- reading ---------------------------------------------------------------------------


def avro_rows(body: bytes) -> tuple[dict, list[dict]]:
    """(writer schema, records) of an Avro container file."""
    reader = fastavro.reader(io.BytesIO(body))
    return reader.writer_schema, list(reader)


def json_rows(key: str, body: bytes) -> list[dict]:
    """JSON lines; bzip2 (by the .bz2 extension, as Hadoop picks its codec) decompressed first.
    A line that is not a JSON object fails, as the table's SerDe is told to."""
    if key.endswith(".bz2"):
        body = bz2.decompress(body)  # concatenated streams too
    rows = []
    for n, line in enumerate(body.decode("utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row, dict):
                raise LayoutError(f"{key}:{n}: not a JSON object")
            rows.append(row)
    return rows


def frame(table: CatalogTable, rows: list[dict], partition: dict, uri: str) -> pl.DataFrame:
    """One object's rows as the table shows them: its columns (Hive names are lower case and
    matched case-insensitively), then the partition columns and `$path`."""
    lowered = [{k.lower(): v for k, v in row.items()} for row in rows]
    series = []
    for name, kind in table.columns:
        values = [row.get(name) for row in lowered]
        dtype = POLARS_TYPES.get(kind)
        series.append(pl.Series(name, values, dtype=dtype) if dtype else pl.Series(name, values))
    n = len(rows)
    for name, kind in table.partition_keys:
        series.append(pl.Series(name, [partition[name]] * n, dtype=POLARS_TYPES[kind]))
    series.append(pl.Series("$path", [uri] * n, dtype=pl.Utf8))
    return pl.DataFrame(series)


def list_keys(s3, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@dataclass
class TableData:
    frame: pl.DataFrame
    files: list[str]  # s3:// URIs read into the frame
    outside: list[str]  # objects under the table's location that no projected path matches
    writer_schemas: dict[str, dict]  # Avro files only: uri -> writer schema


def load_table(s3, table: CatalogTable, values: dict[str, str], keep=lambda uri: True) -> TableData:
    """Every object under the table's location (and `keep(uri)`) read as its SerDe reads it."""
    bucket, prefix = split_uri(resolve(table.location, values))
    frames, files, outside, schemas = [], [], [], {}
    for key in list_keys(s3, bucket, prefix):
        uri = f"s3://{bucket}/{key}"
        if not keep(uri):
            continue
        partition = partition_of(table, values, uri)
        if partition is None:
            outside.append(uri)
            continue
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        if table.serde == AVRO_SERDE:
            schemas[uri], rows = avro_rows(body)
        elif table.serde == JSON_SERDE:
            rows = json_rows(key, body)
        else:
            raise LayoutError(f"{table.name}: SerDe {table.serde} not handled")
        frames.append(frame(table, rows, partition, uri))
        files.append(uri)
    empty = frame(table, [], {n: None for n, _ in table.partition_keys}, "")
    return TableData(pl.concat([empty, *frames], how="vertical_relaxed"), files, outside, schemas)


def sql_context(data: dict[str, TableData]) -> pl.SQLContext:
    return pl.SQLContext({name: d.frame for name, d in data.items()}, eager=True)


def template_and_values(outputs: dict[str, str], template_path: Path = TEMPLATE):
    template = load_template(template_path)
    return template, catalog_tables(template), stack_values(template, outputs)
