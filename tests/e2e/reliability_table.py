"""Renders the fault tests' measured rows into docs/RELIABILITY.md.

Each fault test (tests/e2e/test_faults_*.py) records its workload, the faults it injected
and what it counted in ``$SLUICE_CACHE/reliability/<path>.json`` (``record_reliability`` in
conftest.py). This script puts those rows in the table between the ``reliability-table``
markers of docs/RELIABILITY.md, so the document shows the figures of the last run, not
figures typed by hand. ``just reliability`` runs the fault tests and then this.

    python tests/e2e/reliability_table.py [--check]

``--check`` only verifies that every row is present and says lost = 0 (exit 1 otherwise).
"""

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "RELIABILITY.md"
BEGIN = "<!-- reliability-table:begin -->"
END = "<!-- reliability-table:end -->"
COLUMNS = [
    ("path", "path"),
    ("workload", "workload"),
    ("faults", "faults injected"),
    ("injected", "injected (count)"),
    ("records_in", "records in"),
    ("records_out", "records out"),
    ("in_dlq", "in DLQ / error prefix"),
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("notes", "also counted"),
    ("command", "reproduce"),
]
# Row fields shown in their own columns or in the caption; every other field a test
# records goes to "also counted".
_SHOWN = {key for key, _ in COLUMNS} | {"seed", "recorded"}


def rows() -> list[dict]:
    cache = Path(os.environ.get("SLUICE_CACHE") or Path.home() / ".cache" / "sluice")
    return [json.loads(p.read_text()) for p in sorted((cache / "reliability").glob("*.json"))]


def notes(row: dict) -> str:
    parts = []
    for key, value in row.items():
        if key in _SHOWN:
            continue
        if isinstance(value, list):
            value = ", ".join(map(str, value)) or "none"
        parts.append(f"{key.replace('_', ' ')}: {value}")
    return "; ".join(parts)


def cell(row: dict, key: str) -> str:
    value = notes(row) if key == "notes" else row.get(key, "")
    if key == "injected" and isinstance(value, dict):
        faults = {k: n for k, n in value.items() if not k.endswith(" pass")}
        parts = ", ".join(f"{k} {n}" for k, n in faults.items())
        value = f"{sum(faults.values())} ({parts})" if faults else "0"
    if key == "command" and value:
        value = f"`{value}`"
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(all_rows: list[dict]) -> str:
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in all_rows:
        lines.append("| " + " | ".join(cell(row, key) for key, _ in COLUMNS) + " |")
    seeds = sorted({str(r.get("seed")) for r in all_rows})
    when = max((r.get("recorded", "") for r in all_rows), default="")
    lines.append("")
    lines.append(f"Fault seed(s): {', '.join(seeds)}; last recorded {when}.")
    return "\n".join(lines)


def main() -> int:
    all_rows = rows()
    if not all_rows:
        print("reliability: no rows recorded (run the fault tests first)", file=sys.stderr)
        return 1
    bad = [r["path"] for r in all_rows if r.get("lost") != 0]
    if "--check" in sys.argv:
        for r in all_rows:
            print(f"reliability {r['path']}: in {r.get('records_in')} out {r.get('records_out')} lost {r.get('lost')}")
        return 1 if bad else 0
    text = DOC.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + table(all_rows) + "\n" + text[end:])
    print(f"reliability: {len(all_rows)} row(s) written to {DOC.relative_to(REPO)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
