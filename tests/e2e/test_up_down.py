"""`just up` on a fresh machine reaches healthy, and `just down` leaves no
process behind. Runs a second LocalStack with its own port, state directory
and tools cache (no venv at all), so a shared instance on 4566 is untouched."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import deploy as sluice_deploy
from conftest import REPO, client, localstack_healthy, wait_until

pytestmark = pytest.mark.timeout(900)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def alive(pid: int, started: str) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == started and fields[0] != "Z"


def process_tree(root: int) -> dict[int, str]:
    """pid -> command line of ``root`` and all its descendants."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, todo = {root}, [root]
    while todo:
        parent = todo.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                todo.append(pid)
    tree = {}
    for pid in found:
        try:
            tree[pid] = (
                Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except OSError:
            pass
    return tree


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a listening TCP socket on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


class Instance:
    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.cache = root / "cache"
        self.state = root / "state"
        self.endpoint = f"http://localhost:{self.port}"
        self.env = dict(
            os.environ,
            SLUICE_CACHE=str(self.cache),
            SLUICE_LOCALSTACK_STATE=str(self.state),
            SLUICE_LOCALSTACK_PORT=str(self.port),
        )
        self.env.pop("CARGO_TARGET_DIR", None)

    def just(self, recipe: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.just_binary(), recipe],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @staticmethod
    def just_binary() -> str:
        beside_python = Path(sys.executable).parent / "just"
        return str(beside_python) if beside_python.exists() else shutil.which("just") or "just"

    def localstack_pid(self) -> tuple[int, str]:
        recorded = json.loads((self.state / "localstack.pid").read_text())
        return recorded["pid"], recorded["start_time"]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    instance = Instance(tmp_path_factory.mktemp("fresh-machine"))
    yield instance
    subprocess.run(
        ["python3", str(REPO / "infra" / "localstack" / "ctl.py"), "down"], env=instance.env, check=False
    )
    shutil.rmtree(instance.state, ignore_errors=True)
    # the fresh tools cache is ~1 GB in ~55k files (zig): removing it takes minutes on a busy
    # machine, so it is removed in the background instead of holding up the test run
    subprocess.run(["setsid", "-f", "rm", "-rf", str(instance.root)], check=False)


def test_up_on_a_fresh_machine_reaches_healthy(fresh):
    assert not fresh.cache.exists() and not fresh.state.exists()

    result = fresh.just("up", timeout=840)

    assert result.returncode == 0, result.stdout + result.stderr
    assert localstack_healthy(fresh.port)
    assert (fresh.cache / "venv" / "bin" / "python").exists()
    assert "Ready." in (fresh.state / "localstack.log").read_text()
    assert listening_addresses(fresh.port) == {"127.0.0.1"}, "the gateway must listen on loopback only"


def test_up_again_is_a_quick_no_op(fresh):
    pid_before = fresh.localstack_pid()
    started = time.monotonic()

    result = fresh.just("up", timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "already up" in result.stdout
    assert fresh.localstack_pid() == pid_before
    assert time.monotonic() - started < 20


def test_down_stops_localstack_and_every_child_by_pid(fresh):
    # bring up every kind of child: DynamoDB Local (java), kinesis-mock (node), function processes
    client("dynamodb", fresh.endpoint).create_table(
        TableName="up-down-table",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client("kinesis", fresh.endpoint).create_stream(StreamName="up-down-stream", ShardCount=1)
    lambda_ = client("lambda", fresh.endpoint)
    zip_path = sluice_deploy.lambda_zip_dir() / "lambda-probe" / "bootstrap.zip"
    lambda_.create_function(
        FunctionName="probe",
        Runtime="provided.al2023",
        Handler="bootstrap",
        Role="arn:aws:iam::000000000000:role/probe",
        Code={"ZipFile": zip_path.read_bytes()},
        Timeout=60,
    )
    wait_until(
        lambda: lambda_.get_function(FunctionName="probe")["Configuration"]["State"] == "Active", timeout=60
    )
    assert "FunctionError" not in lambda_.invoke(FunctionName="probe", Payload=b"{}")

    # two invocations still running while we stop (two execution environments)
    def sleeper():
        try:
            client("lambda", fresh.endpoint, retries={"max_attempts": 0}).invoke(
                FunctionName="probe", Payload=b'{"sleep_ms": 30000}'
            )
        except Exception:  # noqa: BLE001 (LocalStack goes away under it)
            pass

    for _ in range(2):
        threading.Thread(target=sleeper, daemon=True).start()

    localstack_pid, _ = fresh.localstack_pid()
    tree = wait_until(
        lambda: (t := process_tree(localstack_pid))
        and sum("bootstrap" in cmd for cmd in t.values()) >= 2
        and any("java" in cmd for cmd in t.values())
        and any("kinesis-local" in cmd for cmd in t.values())
        and t,
        timeout=60,
        message="LocalStack with java, node and two function processes",
    )
    started = {pid: start_time(pid) for pid in tree}

    result = fresh.just("down", timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    survivors = {pid: tree[pid] for pid, st in started.items() if st and alive(pid, st)}
    assert survivors == {}
    assert not localstack_healthy(fresh.port)
    assert not (fresh.state / "localstack.pid").exists()
    leftovers = [
        entry.name
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and str(fresh.state).encode() in _cmdline(entry)
    ]
    assert leftovers == []


def _cmdline(entry: Path) -> bytes:
    try:
        return (entry / "cmdline").read_bytes()
    except OSError:
        return b""
