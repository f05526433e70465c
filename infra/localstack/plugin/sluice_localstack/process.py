"""One function process: the ``bootstrap`` as a child of LocalStack, its own
Runtime API server, and the capture of everything it writes.

Children are started with ``setsid`` (so a kill reaches everything the
bootstrap started) and ``PR_SET_PDEATHSIG=SIGKILL`` (so they die with
LocalStack even after a ``kill -9``). The death signal fires when the *thread*
that forked the child exits, so every child is forked by one long-lived
spawner thread. Each live child's PID and start time are recorded in a pid
directory so ``down`` can find leftovers by PID.
"""

import ctypes
import json
import logging
import os
import queue
import selectors
import signal
import subprocess
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from sluice_localstack.runtime_api import RuntimeApiServer
from sluice_localstack.sandbox import RssWatchdog, Sandbox

LOG = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class _Spawner:
    """Forks every child from one thread that lives as long as LocalStack."""

    _lock = threading.Lock()
    _instance: "_Spawner | None" = None

    def __init__(self):
        self._requests: queue.Queue[tuple[dict, Future]] = queue.Queue()
        threading.Thread(target=self._run, name="sluice-host-spawner", daemon=True).start()

    @classmethod
    def get(cls) -> "_Spawner":
        with cls._lock:
            if cls._instance is None:
                cls._instance = _Spawner()
            return cls._instance

    def spawn(self, preexec=None, **popen_kwargs) -> subprocess.Popen:
        result: Future[subprocess.Popen] = Future()
        self._requests.put((preexec, popen_kwargs, result))
        return result.result()

    def _run(self):
        while True:
            preexec, kwargs, result = self._requests.get()

            def in_child(preexec=preexec):
                _die_with_parent()
                if preexec is not None:
                    preexec()

            try:
                result.set_result(
                    subprocess.Popen(
                        **kwargs,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,  # one pipe keeps stdout/stderr lines in order
                        start_new_session=True,
                        preexec_fn=in_child,
                        close_fds=True,
                    )
                )
            except BaseException as e:  # noqa: BLE001 (handed to the caller)
                result.set_exception(e)


class OutputCapture:
    """Reads the child's combined stdout/stderr continuously (so it never
    blocks on a full pipe) and hands out what arrived since the last ``take``.

    The function writes its log lines before it posts its response, so after
    the response every byte of the invocation is already in the pipe: ``take``
    drains the pipe itself rather than waiting for the reader thread.
    """

    MAX_PENDING = 4 * 1024 * 1024
    TAIL = 64 * 1024

    def __init__(self, pipe):
        self._pipe = pipe
        self._fd = pipe.fileno()
        os.set_blocking(self._fd, False)
        self._lock = threading.Lock()
        self._pending = bytearray()
        self._dropped = 0
        self._tail: deque[bytes] = deque()
        self._tail_size = 0
        self.eof = threading.Event()
        threading.Thread(target=self._run, name="sluice-host-output", daemon=True).start()

    def _run(self):
        with selectors.DefaultSelector() as selector:
            selector.register(self._fd, selectors.EVENT_READ)
            while not self.eof.is_set():
                selector.select(timeout=1.0)
                with self._lock:
                    self._drain()
        self._pipe.close()

    def _drain(self) -> None:
        """Reads everything available now (call with the lock held)."""
        while not self.eof.is_set():
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.eof.set()
                return
            room = self.MAX_PENDING - len(self._pending)
            self._pending += chunk[:room]
            self._dropped += max(0, len(chunk) - room)
            self._tail.append(chunk)
            self._tail_size += len(chunk)
            while self._tail_size > self.TAIL and len(self._tail) > 1:
                self._tail_size -= len(self._tail.popleft())

    def take(self, settle: float = 0.0) -> str:
        """Everything written since the last call. With ``settle``, keeps
        reading until the pipe has been quiet for ``settle`` seconds (at most
        20 rounds), for output a background writer emits just after the response."""
        with self._lock:
            self._drain()
        for _ in range(20 if settle else 0):
            if self.eof.is_set():
                break
            time.sleep(settle)
            with self._lock:
                before = len(self._pending)
                self._drain()
                if len(self._pending) == before:
                    break
        with self._lock:
            data = bytes(self._pending)
            self._pending.clear()
            dropped, self._dropped = self._dropped, 0
        text = data.decode("utf-8", "replace")
        if dropped:
            text += f"\n[sluice-host: {dropped} bytes of output dropped]\n"
        return text

    def tail(self) -> str:
        with self._lock:
            self._drain()
            return b"".join(self._tail).decode("utf-8", "replace")


class ProcessExited(Exception):
    def __init__(self, returncode: int):
        self.returncode = returncode
        if returncode < 0:
            # as Lambda words it (Go's signal names): "signal: killed", "signal: aborted"
            name = signal.strsignal(-returncode)
            reason = f"signal: {name.lower()}" if name else f"signal {-returncode}"
        else:
            reason = f"exit status {returncode}"
        super().__init__(reason)


class InitReported(Exception):
    """The runtime called ``/runtime/init/error`` with this body."""

    def __init__(self, body: bytes):
        super().__init__(body.decode("utf-8", "replace"))
        self.body = body


class Stopped(Exception):
    pass


@dataclass
class Invocation:
    request_id: str
    payload: bytes
    function_arn: str
    trace_id: str
    deadline_ms: int
    client_context: str | None = None
    result: "Future[tuple[bool, bytes]]" = field(default_factory=Future)
    handed_out_at: float | None = None


class FunctionProcess:
    """One running ``bootstrap``. Implements the ``RuntimeSession`` its
    Runtime API server calls into."""

    def __init__(
        self,
        *,
        code_dir: Path,
        env: dict[str, str],
        pid_dir: Path | None,
        label: str,
        sandbox: Sandbox | None = None,
    ):
        self.label = label
        self.sandbox = sandbox
        self._watchdog_killed = False
        self._oom_kills_before = sandbox.cgroup.oom_kills() if sandbox and sandbox.cgroup else 0
        self.ready: Future[None] = Future()
        self._pid_dir = pid_dir
        self._pid_file: Path | None = None
        self._queue: queue.Queue[Invocation | None] = queue.Queue()
        self._current: Invocation | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.exited = threading.Event()
        self.returncode: int | None = None

        self.server = RuntimeApiServer(self)
        threading.Thread(
            target=self.server.serve_forever, name=f"sluice-host-api-{label}", daemon=True
        ).start()
        env = dict(env, AWS_LAMBDA_RUNTIME_API=self.server.address)
        self.started_at = time.monotonic()
        try:
            self.popen = _Spawner.get().spawn(
                preexec=sandbox.preexec if sandbox else None,
                args=[str(code_dir / "bootstrap")],
                env=env,
                cwd=str(code_dir),
            )
        except BaseException:
            self.server.shutdown()
            self.server.server_close()
            raise
        self.pid = self.popen.pid
        self.output = OutputCapture(self.popen.stdout)
        self._watchdog = None
        if sandbox and sandbox.cgroup is None and sandbox.memory_limit_bytes:
            self._watchdog = RssWatchdog(self.pid, sandbox.memory_limit_bytes, self._mark_watchdog_kill)
        self._record_pid()
        threading.Thread(target=self._wait, name=f"sluice-host-wait-{label}", daemon=True).start()

    # --- RuntimeSession (called from Runtime API handler threads) ---

    def next_invocation(self) -> Invocation | None:
        if not self.ready.done():
            self.ready.set_result(None)
        with self._lock:
            self._current = None
        while not self._closing.is_set():
            try:
                invocation = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if invocation is None:
                break
            with self._lock:
                self._current = invocation
                invocation.handed_out_at = time.monotonic()
            return invocation
        return None

    def complete(self, request_id: str, body: bytes, is_error: bool) -> bool:
        with self._lock:
            current = self._current
            if current is None or current.request_id != request_id or current.result.done():
                return False
            current.result.set_result((is_error, body))
            return True

    def init_failed(self, body: bytes) -> bool:
        if self.ready.done():
            return False
        self.ready.set_exception(InitReported(body))
        return True

    # --- executor side ---

    @property
    def alive(self) -> bool:
        return not self.exited.is_set() and not self._closing.is_set()

    def submit(self, invocation: Invocation) -> None:
        self._queue.put(invocation)

    def _mark_watchdog_kill(self) -> None:
        self._watchdog_killed = True

    @property
    def out_of_memory(self) -> bool:
        """Whether the process was killed for passing its memory limit."""
        if self._watchdog_killed:
            return True
        cgroup = self.sandbox.cgroup if self.sandbox else None
        return cgroup is not None and cgroup.oom_kills() > self._oom_kills_before

    def max_memory_mb(self) -> int | None:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return max(1, int(line.split()[1]) // 1024)
        except (OSError, ValueError, IndexError):
            pass
        return None

    def kill(self) -> None:
        """SIGKILL the whole session (the bootstrap and anything it started),
        fail whatever waits on this process, and stop its Runtime API server."""
        self._closing.set()
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError:
            self.popen.kill()
        self._queue.put(None)
        self.exited.wait(timeout=5)
        self._fail_waiters(Stopped("execution environment stopped"))
        threading.Thread(target=self._close_server, daemon=True).start()

    def _close_server(self):
        self.server.shutdown()
        self.server.server_close()

    def _wait(self):
        self.returncode = self.popen.wait()
        if self._watchdog:
            self._watchdog.stop()
        # the bootstrap is gone; end anything it left in its session too
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.exited.set()
        self._forget_pid()
        self._fail_waiters(ProcessExited(self.returncode))
        if not self._closing.is_set():
            LOG.debug("function process %s (%s) exited: %s", self.pid, self.label, self.returncode)

    def _fail_waiters(self, error: Exception) -> None:
        if not self.ready.done():
            try:
                self.ready.set_exception(error)
            except Exception:  # noqa: BLE001 (raced with the Runtime API)
                pass
        with self._lock:
            current = self._current
        if current is not None and not current.result.done():
            try:
                current.result.set_exception(error)
            except Exception:  # noqa: BLE001
                pass
        while True:  # invocations submitted but never picked up
            try:
                queued = self._queue.get_nowait()
            except queue.Empty:
                break
            if queued is not None and not queued.result.done():
                queued.result.set_exception(error)

    def _record_pid(self) -> None:
        if not self._pid_dir:
            return
        try:
            self._pid_dir.mkdir(parents=True, exist_ok=True)
            start_time = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
            self._pid_file = self._pid_dir / str(self.pid)
            self._pid_file.write_text(
                json.dumps({"pid": self.pid, "start_time": start_time, "function": self.label}) + "\n"
            )
        except OSError as e:
            LOG.warning("could not record function pid %s: %s", self.pid, e)

    def _forget_pid(self) -> None:
        if self._pid_file:
            self._pid_file.unlink(missing_ok=True)
