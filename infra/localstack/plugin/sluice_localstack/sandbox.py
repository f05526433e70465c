"""What keeps one execution environment inside Lambda's per-environment limits:

- **memory**: the function's ``MemorySize`` as a hard limit on the whole
  process tree, through a memory cgroup of its own (cgroup v1 ``memory`` or
  cgroup v2, created under LocalStack's own cgroup). The kernel's OOM killer
  ends it at the limit, and the cgroup's ``oom_kill`` counter tells the
  executor to report ``Runtime.OutOfMemory``. Where no cgroup can be created
  (not root, no delegation), a watchdog polls the process's resident size
  every 20 ms and kills it past the limit, reporting the same.
- **/tmp**: a private mount namespace per environment with a ``tmpfs`` of the
  function's ``EphemeralStorage`` size on ``/tmp`` (as root directly; else
  inside a user namespace that maps only the caller's own uid, so the
  function runs as the same user without privileges). Two environments never
  see each other's files, and writing past the size fails with ENOSPC.
  Unlike Lambda's disk-backed ``/tmp``, tmpfs pages count toward the memory
  limit; the README lists that difference.

``Sandbox.preexec`` runs in the child between ``fork`` and ``exec``.
"""

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

LOG = logging.getLogger(__name__)

_libc = ctypes.CDLL(None, use_errno=True)
_mount = _libc.mount
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MS_NOSUID = 2
_MS_NODEV = 4

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _own_memory_cgroup() -> tuple[Path, int] | None:
    """(directory of this process's memory cgroup, cgroup version), if the controller is mounted."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            directory = _CGROUP_ROOT / controllers / path.lstrip("/")
            if (directory / "memory.limit_in_bytes").exists():
                return directory, 1
    for line in lines:
        if line.startswith("0::"):
            for base in (_CGROUP_ROOT, _CGROUP_ROOT / "unified"):
                directory = base / line[3:].lstrip("/")
                if (directory / "cgroup.controllers").exists() and "memory" in (
                    directory / "cgroup.controllers"
                ).read_text().split():
                    return directory, 2
    return None


class MemoryCgroup:
    """One environment's memory cgroup."""

    def __init__(self, path: Path, version: int, limit_bytes: int):
        self.path = path
        self.version = version
        self.limit_bytes = limit_bytes

    @classmethod
    def create(cls, name: str, limit_bytes: int) -> "MemoryCgroup | None":
        own = _own_memory_cgroup()
        if own is None:
            return None
        parent, version = own
        path = parent / "sluice-host" / name
        try:
            if version == 2:
                subtree = parent / "cgroup.subtree_control"
                if "memory" not in subtree.read_text().split():
                    subtree.write_text("+memory")
                (parent / "sluice-host").mkdir(exist_ok=True)
                (parent / "sluice-host" / "cgroup.subtree_control").write_text("+memory")
                path.mkdir(exist_ok=True)
                (path / "memory.max").write_text(str(limit_bytes))
                if (path / "memory.swap.max").exists():
                    (path / "memory.swap.max").write_text("0")
            else:
                path.mkdir(parents=True, exist_ok=True)
                (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
                if (path / "memory.memsw.limit_in_bytes").exists():
                    try:  # no swapping past the limit either
                        (path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
                    except OSError:
                        pass
        except OSError as e:
            LOG.debug("no memory cgroup for %s: %s", name, e)
            try:
                path.rmdir()
            except OSError:
                pass
            return None
        return cls(path, version, limit_bytes)

    def procs_file(self) -> str:
        return str(self.path / "cgroup.procs")

    def oom_kills(self) -> int:
        name, key = ("memory.events", "oom_kill") if self.version == 2 else ("memory.oom_control", "oom_kill")
        try:
            for line in (self.path / name).read_text().splitlines():
                field, _, value = line.partition(" ")
                if field == key:
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def peak_mb(self) -> int | None:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return max(1, int((self.path / name).read_text().strip()) // (1024 * 1024))
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        for _ in range(50):  # the killed processes leave the cgroup a moment later
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)
        LOG.debug("memory cgroup %s still busy, left behind", self.path)


class RssWatchdog:
    """Fallback memory limit: kills the process group when the process's
    resident set passes the limit."""

    def __init__(self, pid: int, limit_bytes: int, on_kill):
        self._pid = pid
        self._limit_kb = limit_bytes // 1024
        self._on_kill = on_kill
        self._stop = threading.Event()
        threading.Thread(target=self._run, name=f"sluice-host-rss-{pid}", daemon=True).start()

    def _run(self):
        status = Path(f"/proc/{self._pid}/status")
        while not self._stop.wait(0.02):
            try:
                rss = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmRSS:"))
            except (OSError, StopIteration, ValueError, IndexError):
                return
            if rss > self._limit_kb:
                self._on_kill()
                try:
                    os.killpg(self._pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                return

    def stop(self):
        self._stop.set()


class Sandbox:
    """The limits of one execution environment, applied to each process it starts."""

    def __init__(self, *, cgroup: MemoryCgroup | None, memory_limit_bytes: int | None, tmp_size_mb: int | None):
        self.cgroup = cgroup
        self.memory_limit_bytes = memory_limit_bytes
        self.tmp_size_mb = tmp_size_mb
        self._uid = os.getuid()
        self._gid = os.getgid()

    def preexec(self) -> None:
        """In the child, before exec: join the cgroup, then get a private /tmp."""
        if self.cgroup is not None:
            fd = os.open(self.cgroup.procs_file(), os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
        if self.tmp_size_mb is not None:
            private_tmp(self.tmp_size_mb, self._uid, self._gid)


def private_tmp(size_mb: int, uid: int, gid: int) -> None:
    """A new mount namespace with a fresh tmpfs of ``size_mb`` on /tmp (in the calling process)."""
    if uid == 0:
        os.unshare(os.CLONE_NEWNS)
    else:
        os.unshare(os.CLONE_NEWUSER | os.CLONE_NEWNS)
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    if _mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "making / private failed")
    options = f"size={size_mb}m,mode=1777".encode()
    if _mount(b"tmpfs", b"/tmp", b"tmpfs", _MS_NOSUID | _MS_NODEV, options) != 0:
        raise OSError(ctypes.get_errno(), "mounting tmpfs on /tmp failed")


_tmp_support: bool | None = None
_tmp_lock = threading.Lock()


def private_tmp_supported() -> bool:
    """Whether a private /tmp can be made here (tried once, in a throwaway child)."""
    global _tmp_support
    with _tmp_lock:
        if _tmp_support is None:
            probe = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import os; from sluice_localstack.sandbox import private_tmp; "
                    "private_tmp(1, os.getuid(), os.getgid())",
                ],
                capture_output=True,
                timeout=30,
            )
            _tmp_support = probe.returncode == 0
            if not _tmp_support:
                LOG.warning(
                    "sluice-host: no private /tmp per environment here (mount namespaces unavailable); "
                    "functions share the host's /tmp"
                )
        return _tmp_support
