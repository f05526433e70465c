"""The demo scenario end to end: `sluice-demo --scale small` against the session's pipeline
stack (the `pipeline` fixture), and the summary's counts asserted from its JSON.

The driver is the same program `just demo` runs; it pushes generated data through every
function of the stack, waits for the real outputs and exits non-zero when a count is wrong.
Here each row's observed count must equal the count the driver derived from its own input,
and the counts must be those the small scale sends (so a driver that sent nothing fails)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import ENDPOINT, REPO

pytestmark = pytest.mark.timeout(900)

TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache/sluice/target")


@pytest.fixture(scope="module")
def driver():
    """The sluice-demo binary (a debug build: quick when `cargo test` already ran)."""
    subprocess.run(
        ["cargo", "build", "--quiet", "-p", "sluice-demo"],
        cwd=REPO,
        check=True,
        env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)},
        timeout=900,
    )
    return TARGET / "debug" / "sluice-demo"


def rows_by_function(summary: dict) -> dict[str, dict]:
    return {row["function"]: row for row in summary["rows"]}


def test_small_scenario_through_every_function(pipeline, driver, tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(pipeline))
    summary_file = tmp_path / "summary.json"
    run = subprocess.run(
        [str(driver), "--outputs", str(outputs), "--scale", "small", "--json", str(summary_file),
         "--timeout", "400", "--endpoint-url", ENDPOINT],
        capture_output=True,
        text=True,
        timeout=840,
    )
    print(run.stdout, run.stderr)
    summary = json.loads(summary_file.read_text())
    rows = rows_by_function(summary)

    # Small scale: 200 events, 3 files x 40 records (one invalid each), 20 crashes
    # (14 accepted), 8 instances x 10 counters, one report.
    assert rows["ingest-api"]["expected"] == 200
    assert rows["kinesis-archiver"]["expected"] == 200
    assert rows["avro-converter"]["expected"] == 3 * 39
    assert rows["crash-router"]["expected"] == 14
    assert rows["counter-mapper"]["expected"] == 10
    assert rows["counter-aggregator"]["expected"] == 10
    # The session stack has no limits: the day's 10 totals in the snapshot, no alert expected.
    assert rows["counter-reporter"]["expected"] == 10
    assert rows["job-poller"]["expected"] == 1
    assert "crash-router (submitter)" in rows

    wrong = {name: row for name, row in rows.items() if row["observed"] != row["expected"] or not row["ok"]}
    assert not wrong, json.dumps(wrong, indent=2)
    assert all(row["latency_ms"] is not None for row in rows.values())
    assert summary["ok"] is True
    assert run.returncode == 0, run.stdout[-3000:]
    assert "every path complete" in run.stdout
