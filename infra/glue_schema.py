#!/usr/bin/env python3
"""An Avro schema (.avsc) as Glue/Athena table columns, and the drift check of the stack's Avro table.

    python infra/glue_schema.py [SCHEMA.avsc] --cloudformation   # Columns + avro.schema.literal YAML for a template
    python infra/glue_schema.py [SCHEMA.avsc] --athena-ddl [--location s3://bucket/avro/] [--table NAME]
    python infra/glue_schema.py --check infra/pipeline.yaml      # exit 1 naming every column that differs
    python infra/glue_schema.py --self-test                      # the type mapping and the check, no network

SCHEMA defaults to the avro-converter's built-in schema (functions/avro-converter/schema/player_event.avsc);
pass the schema you give the converter with `AvroSchemaS3Uri` to get the table for your own events.

Types are those Hive's AvroSerDe (org.apache.hadoop.hive.serde2.avro.SchemaToTypeInfo, which Athena
and Glue use) derives from the schema:

| Avro | Hive/Athena |
|---|---|
| boolean, int, long, float, double, string | boolean, int, bigint, float, double, string |
| bytes, fixed | binary |
| bytes/fixed with logicalType decimal(p, s) | decimal(p,s) |
| int with logicalType date | date |
| long with logicalType timestamp-millis | timestamp |
| long with timestamp-micros, local-timestamp-*, time-micros; int with time-millis | bigint / int (the SerDe ignores these logical types) |
| string with logicalType uuid | string |
| enum | string |
| record | struct<name:type,...> |
| array | array<type> |
| map | map<string,type> |
| ["null", T] (either order) | T (every Hive column is nullable) |
| any other union | uniontype<...> |

Hive columns carry no nullability: the table keeps the schema itself (`avro.schema.literal`), so a
required field stays required for readers that honour the schema (Spark, Hive), and `--check`
compares that literal with the .avsc too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCHEMA = REPO / "functions" / "avro-converter" / "schema" / "player_event.avsc"
TEMPLATE = REPO / "infra" / "pipeline.yaml"
# The Avro table of infra/pipeline.yaml (logical id) and the schema it is derived from.
AVRO_TABLE = "PlayerEventsAvroTable"

PRIMITIVES = {
    "boolean": "boolean",
    "int": "int",
    "long": "bigint",
    "float": "float",
    "double": "double",
    "string": "string",
    "bytes": "binary",
    "fixed": "binary",
    "null": "void",
}


class SchemaError(ValueError):
    pass


def hive_type(schema, named: dict | None = None) -> str:
    """The Hive/Athena type the AvroSerDe reads an Avro (sub)schema as."""
    named = {} if named is None else named
    if isinstance(schema, list):
        others = [s for s in schema if s != "null"]
        if len(others) == 1 and len(others) < len(schema):
            return hive_type(others[0], named)
        return f"uniontype<{','.join(hive_type(s, named) for s in schema)}>"
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return PRIMITIVES[schema]
        if schema in named:
            return hive_type(named[schema], named)
        short = schema.rsplit(".", 1)[-1]
        if short in named:
            return hive_type(named[short], named)
        raise SchemaError(f"unknown type name {schema!r}")
    if not isinstance(schema, dict) or "type" not in schema:
        raise SchemaError(f"not an Avro schema: {schema!r}")
    kind = schema["type"]
    logical = schema.get("logicalType")
    if kind in ("record", "enum", "fixed") and "name" in schema:
        full = schema["name"] if "." in schema["name"] or not schema.get("namespace") else (
            f"{schema['namespace']}.{schema['name']}")
        named[full] = named[schema["name"].rsplit(".", 1)[-1]] = schema
    if kind in ("bytes", "fixed") and logical == "decimal":
        return f"decimal({schema['precision']},{schema.get('scale', 0)})"
    if kind == "int" and logical == "date":
        return "date"
    if kind == "long" and logical == "timestamp-millis":
        return "timestamp"
    if kind == "record":
        return "struct<" + ",".join(f"{f['name']}:{hive_type(f['type'], named)}" for f in schema["fields"]) + ">"
    if kind == "enum":
        return "string"
    if kind == "array":
        return f"array<{hive_type(schema['items'], named)}>"
    if kind == "map":
        return f"map<string,{hive_type(schema['values'], named)}>"
    if isinstance(kind, (dict, list)):
        return hive_type(kind, named)
    if kind in PRIMITIVES:
        return PRIMITIVES[kind]
    return hive_type(kind, named)


def is_nullable(schema) -> bool:
    return isinstance(schema, list) and "null" in schema


def columns(schema: dict) -> list[dict]:
    """Top-level record fields as Glue columns: [{"Name", "Type", "Comment"?}]."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise SchemaError("the schema must be a record (one column per field)")
    named: dict = {}
    hive_type({**schema, "fields": []}, named)
    out = []
    for field in schema["fields"]:
        column = {"Name": field["name"].lower(), "Type": hive_type(field["type"], named)}
        if field.get("doc"):
            column["Comment"] = field["doc"][:255]
        out.append(column)
    return out


def schema_literal(schema: dict) -> str:
    """The schema as one line of JSON, for the table's avro.schema.literal."""
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)


# --- output formats --------------------------------------------------------------------


def yaml_scalar(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def cloudformation(schema: dict, indent: int = 10) -> str:
    """The StorageDescriptor.Columns and SerdeInfo parameter of an AWS::Glue::Table."""
    pad = " " * indent
    lines = [f"{pad}Columns:"]
    for c in columns(schema):
        lines.append(f"{pad}  - Name: {c['Name']}")
        lines.append(f"{pad}    Type: {yaml_scalar(c['Type'])}")
        if "Comment" in c:
            lines.append(f"{pad}    Comment: {yaml_scalar(c['Comment'])}")
    lines.append(f"{pad}SerdeInfo:")
    lines.append(f"{pad}  SerializationLibrary: org.apache.hadoop.hive.serde2.avro.AvroSerDe")
    lines.append(f"{pad}  Parameters:")
    lines.append(f"{pad}    avro.schema.literal: {yaml_scalar(schema_literal(schema))}")
    return "\n".join(lines)


def athena_ddl(schema: dict, table: str = "player_events_avro", location: str = "s3://BUCKET/avro/",
               first_year: int = 2024, last_year: int = 2035) -> str:
    """CREATE EXTERNAL TABLE with partition projection over the converter's hive hour layout."""
    cols = ",\n".join(f"  `{c['Name']}` {c['Type']}" for c in columns(schema))
    location = location if location.endswith("/") else location + "/"
    literal = schema_literal(schema).replace("'", "\\'")
    return f"""CREATE EXTERNAL TABLE `{table}` (
{cols}
)
PARTITIONED BY (`year` int, `month` int, `day` int, `hour` int)
ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.avro.AvroSerDe'
WITH SERDEPROPERTIES ('avro.schema.literal'='{literal}')
STORED AS
  INPUTFORMAT 'org.apache.hadoop.hive.ql.io.avro.AvroContainerInputFormat'
  OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.avro.AvroContainerOutputFormat'
LOCATION '{location}'
TBLPROPERTIES (
  'projection.enabled'='true',
  'projection.year.type'='integer', 'projection.year.range'='{first_year},{last_year}', 'projection.year.digits'='4',
  'projection.month.type'='integer', 'projection.month.range'='1,12', 'projection.month.digits'='2',
  'projection.day.type'='integer', 'projection.day.range'='1,31', 'projection.day.digits'='2',
  'projection.hour.type'='integer', 'projection.hour.range'='0,23', 'projection.hour.digits'='2',
  'storage.location.template'='{location}year=${{year}}/month=${{month}}/day=${{day}}/hour=${{hour}}/'
);"""


# --- drift check -----------------------------------------------------------------------


def template_table(template: dict, logical_id: str = AVRO_TABLE) -> dict:
    resource = template.get("Resources", {}).get(logical_id)
    if not resource or resource.get("Type") != "AWS::Glue::Table":
        raise SchemaError(f"the template has no AWS::Glue::Table {logical_id}")
    return resource["Properties"]["TableInput"]


def drift(schema: dict, table_input: dict) -> list[str]:
    """Every difference between the schema's columns and literal and the table's."""
    problems = []
    want = {c["Name"]: c["Type"] for c in columns(schema)}
    descriptor = table_input.get("StorageDescriptor", {})
    have = {c["Name"]: c["Type"] for c in descriptor.get("Columns", [])}
    for name in want.keys() - have.keys():
        problems.append(f"column {name}: in the schema ({want[name]}), missing from the table")
    for name in have.keys() - want.keys():
        problems.append(f"column {name}: in the table ({have[name]}), not in the schema")
    for name in want.keys() & have.keys():
        if want[name] != have[name]:
            problems.append(f"column {name}: table type {have[name]}, schema gives {want[name]}")
    if [n for n in have if n in want] != [n for n in want if n in have]:
        problems.append("columns: the table's order differs from the schema's field order")
    literal = descriptor.get("SerdeInfo", {}).get("Parameters", {}).get("avro.schema.literal")
    if literal is None:
        problems.append("avro.schema.literal: missing from the table's SerdeInfo parameters")
    elif json.loads(literal) != schema:
        problems.append("avro.schema.literal: differs from the schema file")
    partitions = [k["Name"] for k in table_input.get("PartitionKeys", [])]
    for name in partitions:
        if name in want:
            problems.append(f"column {name}: is also a partition key (Hive forbids the clash)")
    return problems


def check(template_path: Path, schema: dict) -> list[str]:
    sys.path.insert(0, str(REPO / "infra"))
    from check_security import load_template  # the loader that understands !Sub/!Ref

    return drift(schema, template_table(load_template(template_path)))


def self_test() -> list[str]:
    failures = []
    sample = {
        "type": "record", "name": "R", "namespace": "n",
        "fields": [
            {"name": "b", "type": "boolean"}, {"name": "i", "type": "int"}, {"name": "l", "type": "long"},
            {"name": "f", "type": "float"}, {"name": "d", "type": "double"}, {"name": "s", "type": "string"},
            {"name": "y", "type": "bytes"}, {"name": "x", "type": {"type": "fixed", "name": "F", "size": 4}},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A"]}},
            {"name": "u", "type": ["null", "long"]}, {"name": "u2", "type": ["string", "null"]},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "tu", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "dt", "type": {"type": "int", "logicalType": "date"}},
            {"name": "m", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
            {"name": "a", "type": {"type": "array", "items": ["null", "string"]}},
            {"name": "mp", "type": {"type": "map", "values": {"type": "array", "items": "int"}}},
            {"name": "r", "type": ["null", {"type": "record", "name": "Inner",
                                            "fields": [{"name": "k", "type": "string"}, {"name": "v", "type": "E"}]}]},
            {"name": "again", "type": ["null", "n.Inner"]},
            {"name": "un", "type": ["null", "int", "string"]},
        ],
    }
    expected = {
        "b": "boolean", "i": "int", "l": "bigint", "f": "float", "d": "double", "s": "string",
        "y": "binary", "x": "binary", "e": "string", "u": "bigint", "u2": "string", "ts": "timestamp",
        "tu": "bigint", "dt": "date", "m": "decimal(9,2)", "a": "array<string>",
        "mp": "map<string,array<int>>", "r": "struct<k:string,v:string>", "again": "struct<k:string,v:string>",
        "un": "uniontype<void,int,string>",
    }
    got = {c["Name"]: c["Type"] for c in columns(sample)}
    for name, want in expected.items():
        if got.get(name) != want:
            failures.append(f"self-test: {name} maps to {got.get(name)}, expected {want}")
    table = {
        "StorageDescriptor": {
            "Columns": columns(sample),
            "SerdeInfo": {"Parameters": {"avro.schema.literal": schema_literal(sample)}},
        },
        "PartitionKeys": [{"Name": "year", "Type": "int"}],
    }
    if drift(sample, table):
        failures.append(f"self-test: a table made from the schema drifts: {drift(sample, table)}")
    changed = json.loads(json.dumps(table))
    changed["StorageDescriptor"]["Columns"][2]["Type"] = "int"
    if not any(p.startswith("column l:") for p in drift(sample, changed)):
        failures.append("self-test: the check missed a changed column type")
    grown = json.loads(json.dumps(sample))
    grown["fields"].append({"name": "new_field", "type": ["null", "string"], "default": None})
    if not any("new_field" in p for p in drift(grown, table)):
        failures.append("self-test: the check missed a field added to the schema")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("schema", nargs="?", type=Path, default=DEFAULT_SCHEMA, help="the .avsc (default: built-in)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--cloudformation", action="store_true", help="print the table's Columns/SerdeInfo YAML")
    mode.add_argument("--athena-ddl", action="store_true", help="print CREATE EXTERNAL TABLE with projection")
    mode.add_argument("--check", type=Path, metavar="TEMPLATE", help=f"compare the template's {AVRO_TABLE}")
    mode.add_argument("--self-test", action="store_true", help="test the mapping and the check")
    parser.add_argument("--location", default="s3://BUCKET/avro/", help="--athena-ddl: the Avro output location")
    parser.add_argument("--table", default="player_events_avro", help="--athena-ddl: table name")
    args = parser.parse_args(argv)

    if args.self_test:
        failures = self_test()
        for failure in failures:
            print(f"glue_schema: {failure}", file=sys.stderr)
        if not failures:
            print("glue_schema: self-test ok")
        return 1 if failures else 0
    try:
        schema = json.loads(args.schema.read_text())
        if args.cloudformation:
            print(cloudformation(schema))
        elif args.athena_ddl:
            print(athena_ddl(schema, args.table, args.location))
        else:
            problems = check(args.check, schema)
            for problem in problems:
                print(f"glue_schema: {args.check.name} {AVRO_TABLE}: {problem}", file=sys.stderr)
            if problems:
                return 1
            print(f"glue_schema: {args.check.name} {AVRO_TABLE} matches {args.schema.relative_to(REPO)
                  if args.schema.is_relative_to(REPO) else args.schema}")
    except (OSError, ValueError, KeyError) as e:
        print(f"glue_schema: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
