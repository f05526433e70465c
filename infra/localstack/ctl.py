"""Start, stop and inspect sluice's local LocalStack (host mode, no Docker).

    python infra/localstack/ctl.py up|down|status|healthy

Standard library only. Everything LocalStack writes lives in the state
directory (default ``<repo>/.localstack``): ``localstack.log``,
``localstack.pid``, ``var/lib/localstack/…``, ``tmp/`` (TMPDIR, unzipped
function code) and ``functions/`` (PIDs of running function processes).

Environment:
    SLUICE_LOCALSTACK_PORT   gateway port on 127.0.0.1 (default 4566)
    SLUICE_LOCALSTACK_STATE  state directory (default <repo>/.localstack)
    SLUICE_CACHE             tools cache with the venv and offline packages (default ~/.cache/sluice)
    SLUICE_LOCALSTACK_GRACE  seconds between SIGTERM and SIGKILL on down (default 10)
Any LocalStack setting (LS_LOG, PERSISTENCE, LAMBDA_KEEPALIVE_MS, …) in the
environment of ``up`` is passed on; the ones below that make host mode work are fixed.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("SLUICE_CACHE") or Path.home() / ".cache" / "sluice")
VENV_PYTHON = CACHE / "venv" / "bin" / "python"
PACKAGES = CACHE / "localstack-packages"
PORT = int(os.environ.get("SLUICE_LOCALSTACK_PORT") or 4566)
STATE = Path(os.environ.get("SLUICE_LOCALSTACK_STATE") or REPO / ".localstack").resolve()
LOG_FILE = STATE / "localstack.log"
PID_FILE = STATE / "localstack.pid"
FUNCTION_PIDS = STATE / "functions"
LIB = STATE / "var" / "lib" / "localstack" / "lib"
GRACE = float(os.environ.get("SLUICE_LOCALSTACK_GRACE") or 10)
START_TIMEOUT = 120


def log(message: str) -> None:
    print(f"localstack: {message}", flush=True)


# --- processes, identified by (pid, start time) so a reused PID is never killed ---


def start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def is_running(pid: int, started: str | None) -> bool:
    current = start_time(pid)
    if current is None or (started is not None and current != started):
        return False
    try:  # a zombie has exited; it only waits for its parent
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def all_processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            table[int(entry.name)] = (int(fields[1]), fields[19])
        except (OSError, IndexError, ValueError):
            continue
    return table


def descendants(root: int, table: dict[int, tuple[int, str]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def belongs_to_state(pid: int) -> bool:
    """A process started from this state directory: a function bootstrap (its
    executable lies under it) or a LocalStack helper (DynamoDB Local, kinesis-mock:
    their command line names a package under var/lib/localstack/lib)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        if exe.startswith(f"{STATE}/"):
            return True
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    lib = str(LIB).encode()
    return any(lib in arg for arg in argv)


def read_pid_file() -> tuple[int, str | None] | None:
    try:
        data = json.loads(PID_FILE.read_text())
        return int(data["pid"]), data.get("start_time")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def function_pids() -> list[tuple[int, str | None]]:
    found = []
    for entry in FUNCTION_PIDS.glob("*"):
        try:
            data = json.loads(entry.read_text())
            found.append((int(data["pid"]), data.get("start_time")))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def tree() -> dict[int, str]:
    """Every live process that belongs to this instance: LocalStack, all its
    descendants, recorded function processes, and strays from earlier runs."""
    table = all_processes()
    members: dict[int, str] = {}
    recorded = read_pid_file()
    if recorded and is_running(*recorded):
        members[recorded[0]] = recorded[1] or table.get(recorded[0], (0, ""))[1]
        for pid in descendants(recorded[0], table):
            members[pid] = table[pid][1]
    for pid, started in function_pids():
        if is_running(pid, started):
            members[pid] = started or table.get(pid, (0, ""))[1]
    for pid in table:
        if pid not in members and pid != os.getpid() and belongs_to_state(pid):
            members[pid] = table[pid][1]
    return members


def signal_all(members: dict[int, str], sig: int) -> None:
    for pid, started in members.items():
        if not is_running(pid, started):
            continue
        for kill in (os.killpg, os.kill):  # the whole group when pid leads one, else just the process
            try:
                if kill is os.killpg and os.getpgid(pid) != pid:
                    continue
                kill(pid, sig)
                break
            except (ProcessLookupError, PermissionError):
                continue


# --- health ---


def healthy(port: int = PORT) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_localstack/health", timeout=2) as response:
            return response.status == 200 and "services" in json.loads(response.read() or b"{}")
    except (OSError, ValueError, urllib.error.URLError):
        return False


def port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


# --- commands ---


def link_packages() -> None:
    """Offline packages built once by setup.sh, linked where LocalStack's
    installers look (var/lib/localstack/lib/<name>/<version>)."""
    if not PACKAGES.is_dir():
        sys.exit(f"localstack: {PACKAGES} is missing; run `just setup` (infra/localstack/setup.sh)")
    for package in PACKAGES.iterdir():
        if not package.is_dir():
            continue
        for version in package.iterdir():
            target = LIB / package.name / version.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() and os.readlink(target) == str(version):
                continue
            if target.is_symlink() or target.is_file():
                target.unlink()
            elif target.exists():
                shutil.rmtree(target)
            target.symlink_to(version)


def localstack_environment() -> dict[str, str]:
    env = dict(os.environ)
    for name, default in {
        # async invoke retries after 1 s, 2 s (AWS: about 1 and 2 minutes)
        "LAMBDA_RETRY_BASE_DELAY": "1",
        # The Kinesis engine otherwise writes every stream's records (DynamoDB streams
        # included) to a JSON file every 5 s: with a test run's tens of thousands of
        # records that kept it at 100% CPU, and PutRecords took up to 27 s. State here
        # lives for one LocalStack process anyway.
        "KINESIS_PERSISTENCE": "0",
    }.items():
        env.setdefault(name, default)
    env.update(
        {
            "OVERRIDE_IN_DOCKER": "0",  # else LocalStack writes to /var/lib, /etc, /usr/lib/localstack
            "FILESYSTEM_ROOT": str(STATE),
            "TMPDIR": str(STATE / "tmp"),  # unzipped function code and LocalStack's temp files
            "GATEWAY_LISTEN": f"127.0.0.1:{PORT}",
            "GATEWAY_SERVER": "sluice-twisted",  # twisted, bound to 127.0.0.1 only
            "LOCALSTACK_HOST": f"localhost:{PORT}",
            "DNS_ADDRESS": "0",
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "SQS_ENDPOINT_STRATEGY": "path",
            "LAMBDA_RUNTIME_EXECUTOR": "sluice-host",
            "SLUICE_HOST_PID_DIR": str(FUNCTION_PIDS),
        }
    )
    return env


def wait_healthy(pid: int, started: str | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy():
            return True
        if not is_running(pid, started):
            return False
        time.sleep(0.25)
    return False


def log_tail(lines: int = 40) -> str:
    try:
        return "\n".join(LOG_FILE.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def up() -> int:
    t0 = time.monotonic()
    recorded = read_pid_file()
    if recorded and is_running(*recorded):
        if wait_healthy(*recorded, timeout=START_TIMEOUT):
            log(f"already up at http://localhost:{PORT} (pid {recorded[0]}, state {STATE})")
            return 0
        log(f"pid {recorded[0]} is running but not healthy; stopping it")
        down()
    elif healthy():
        log(f"a LocalStack not started from {STATE} already answers on port {PORT}; using it")
        return 0
    if port_in_use(PORT):
        log(f"port {PORT} is taken by something that is not a healthy LocalStack")
        return 1
    if not VENV_PYTHON.exists():
        log(f"{VENV_PYTHON} is missing; run `just setup`")
        return 1

    strays = tree()
    if strays:
        log(f"stopping {len(strays)} leftover process(es) of an earlier run: {sorted(strays)}")
        stop_members(strays)
    STATE.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(STATE / "tmp", ignore_errors=True)  # function code and temp files of earlier runs
    shutil.rmtree(FUNCTION_PIDS, ignore_errors=True)
    (STATE / "tmp").mkdir()
    FUNCTION_PIDS.mkdir()
    link_packages()
    if LOG_FILE.exists():
        LOG_FILE.replace(LOG_FILE.with_name(LOG_FILE.name + ".1"))

    with open(LOG_FILE, "ab") as log_out:
        process = subprocess.Popen(
            [str(VENV_PYTHON), "-m", "localstack.runtime.main"],
            cwd=STATE,
            env=localstack_environment(),
            stdin=subprocess.DEVNULL,
            stdout=log_out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: down signals the group
        )
    started = start_time(process.pid)
    PID_FILE.write_text(json.dumps({"pid": process.pid, "start_time": started, "port": PORT}) + "\n")
    log(f"starting (pid {process.pid}, port {PORT}, log {LOG_FILE})")
    if wait_healthy(process.pid, started, START_TIMEOUT):
        log(f"up at http://localhost:{PORT} in {time.monotonic() - t0:.1f}s")
        return 0
    log(f"did not become healthy; last log lines:\n{log_tail()}")
    down()
    return 1


def stop_members(members: dict[int, str]) -> list[int]:
    """SIGTERM, wait up to GRACE seconds, SIGKILL; returns the PIDs still alive after that."""
    signal_all(members, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline and any(is_running(p, s) for p, s in members.items()):
        time.sleep(0.1)
    alive = {p: s for p, s in members.items() if is_running(p, s)}
    if alive:
        log(f"still running after {GRACE:.0f}s, killing: {sorted(alive)}")
        signal_all(alive, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(is_running(p, s) for p, s in alive.items()):
            time.sleep(0.1)
    return [p for p, s in members.items() if is_running(p, s)]


def down() -> int:
    members = tree()
    recorded = read_pid_file()
    if not members:
        log("not running" if not recorded else f"not running (stale pid file {PID_FILE})")
        PID_FILE.unlink(missing_ok=True)
        return 0
    localstack_pid = recorded[0] if recorded and recorded[0] in members else None
    log(f"stopping {len(members)} process(es): {sorted(members)}")
    # LocalStack first (it stops its helpers and function processes itself), then whatever is left
    if localstack_pid:
        stop_members({localstack_pid: members[localstack_pid]})
    survivors = stop_members(members)
    # anything started while we were stopping (a function spawned during shutdown)
    late = {p: s for p, s in tree().items() if p not in members}
    if late:
        survivors += stop_members(late)
    if survivors:
        log(f"could not stop: {survivors}")
        return 1
    PID_FILE.unlink(missing_ok=True)
    log("stopped; no process left")
    return 0


def status() -> int:
    recorded = read_pid_file()
    members = tree()
    state = "healthy" if healthy() else "not answering"
    log(f"port {PORT}: {state}; state dir {STATE}")
    if recorded:
        log(f"pid file: {recorded[0]} ({'running' if is_running(*recorded) else 'not running'})")
    for pid in sorted(members):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            argv = "?"
        print(f"  {pid} {argv[:160]}")
    return 0 if state == "healthy" else 1


def exclusively(command):
    """Runs ``command`` holding the state directory's lock, so two ``up`` (or an
    ``up`` and a ``down``) of the same instance never interleave."""
    import fcntl

    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / ".ctl.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return command()


if __name__ == "__main__":
    commands = {
        "up": lambda: exclusively(up),
        "down": lambda: exclusively(down),
        "status": status,
        "healthy": lambda: 0 if healthy() else 1,
    }
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(commands)}")
    sys.exit(commands[sys.argv[1]]())
