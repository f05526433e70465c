"""``sluice-host``: a LocalStack Lambda runtime executor that runs each
execution environment as a local process instead of a Docker container.

LocalStack's Lambda service decides *when* environments start, stop and get
invocations (concurrency, keep-alive, retries, event source mappings,
destinations); this executor only does what the container's init would:

- ``prepare_version``: unzip the code once per version (LocalStack's own
  ``prepare_for_execution``) and check it can run here (Zip, ``provided*``
  runtime, a ``bootstrap``, the host's architecture);
- ``start``: start ``bootstrap`` with LocalStack's environment plus
  ``AWS_LAMBDA_RUNTIME_API`` for its own Runtime API server; ready at its
  first ``GET /invocation/next``; init errors and early exits fail the start
  with the error document LocalStack returns to the caller;
- ``invoke``: hand the invocation to the process with the real headers,
  enforce the function timeout (kill, ``Sandbox.Timedout``, a fresh process on
  the next invoke), report crashes as ``Runtime.ExitError``, and return the
  captured stdout/stderr of the invocation as its logs (LocalStack writes them
  to CloudWatch Logs), framed by START/END/REPORT lines as on AWS.
"""

import json
import logging
import math
import os
import platform
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from localstack import config
from localstack.aws.api.lambda_ import Architecture, PackageType
from localstack.services.lambda_.invocation.executor_endpoint import (
    ShutdownDuringStartup,
    StatusErrorException,
)
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)

from sluice_localstack import limits
from sluice_localstack.process import (
    FunctionProcess,
    InitReported,
    Invocation,
    ProcessExited,
    Stopped,
)
from sluice_localstack.sandbox import MemoryCgroup, Sandbox, private_tmp_supported

LOG = logging.getLogger(__name__)

# Variables for the container's init, not for the function.
_INIT_ONLY_VARIABLES = {
    "LOCALSTACK_RUNTIME_ID",
    "LOCALSTACK_RUNTIME_ENDPOINT",
    "LOCALSTACK_FUNCTION_ACCOUNT_ID",
    "LOCALSTACK_CHMOD_PATHS",
    "LOCALSTACK_USER",
    "LOCALSTACK_INIT_LOG_LEVEL",
    "LOCALSTACK_POST_INVOKE_WAIT_MS",
    "LOCALSTACK_MAX_PAYLOAD_SIZE",
    "LOCALSTACK_HOT_RELOADING_PATHS",
}

_HOST_MACHINES = {
    Architecture.x86_64: {"x86_64", "amd64"},
    Architecture.arm64: {"aarch64", "arm64"},
}

# Output a background log writer flushes just after the response still belongs to the invocation.
_LOG_SETTLE_SECONDS = 0.005


def _pid_dir() -> Path:
    return Path(os.environ.get("SLUICE_HOST_PID_DIR") or Path(tempfile.gettempdir()) / "sluice-host-pids")


def _error_document(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def _exit_message(request_id: str | None, exited: ProcessExited) -> str:
    prefix = f"RequestId: {request_id} " if request_id else ""
    return f"{prefix}Error: Runtime exited with error: {exited}"


def _init_error(error: BaseException, request_id: str | None) -> tuple[str, bytes]:
    """(error type, error document) for a failed cold start."""
    if isinstance(error, InitReported):
        try:
            document = json.loads(error.body or b"null")
        except ValueError:
            document = None
        if isinstance(document, dict):
            return str(document.get("errorType") or "Runtime.Unknown"), error.body
        return "Runtime.Unknown", _error_document("Runtime.Unknown", str(error))
    if isinstance(error, ProcessExited):
        return "Runtime.ExitError", _error_document("Runtime.ExitError", _exit_message(request_id, error))
    if isinstance(error, OSError):
        return "Runtime.InvalidEntrypoint", _error_document(
            "Runtime.InvalidEntrypoint", f"Error: fork/exec bootstrap: {error.strerror or error}"
        )
    return "Runtime.Unknown", _error_document("Runtime.Unknown", str(error))


class HostRuntimeExecutor(RuntimeExecutor):
    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._process: FunctionProcess | None = None
        self._env: dict[str, str] = {}
        self._tmp_dir: Path | None = None
        self._sandbox: Sandbox | None = None
        # the cold start's output and duration, reported with the first invocation
        self._init_output = ""
        self._init_duration_ms: float | None = None
        self._last_output_tail = ""

    # --- addresses (asked for before start(), to build the environment) ---

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        host = config.GATEWAY_LISTEN[0].host
        return host if host not in ("", "0.0.0.0", "::") else "127.0.0.1"

    def get_runtime_endpoint(self) -> str:
        port = config.GATEWAY_LISTEN[0].port
        return f"http://{self.get_endpoint_from_executor()}:{port}/_localstack_lambda/{self.id}"

    # --- lifecycle ---

    def start(self, env_vars: dict[str, str]) -> None:
        self._tmp_dir = Path(tempfile.mkdtemp(prefix=f"lambda-{self.id[:12]}-"))
        self._sandbox = self._make_sandbox()
        self._env = self._process_environment(env_vars)
        started = time.monotonic()
        try:
            process = self._spawn()
            process.ready.result()
        except ShutdownDuringStartup:
            raise
        except BaseException as error:
            process = self._process
            output = process.output.take() if process else ""
            if process:
                process.kill()
            if self._stopped.is_set():
                raise ShutdownDuringStartup("execution environment stopped during startup") from error
            error_type, document = _init_error(error, None)
            LOG.warning(
                "Cold start of %s failed (%s): %s",
                self.function_version.qualified_arn,
                error_type,
                document.decode("utf-8", "replace"),
            )
            self._write_init_failure_logs(output, error_type, (time.monotonic() - started) * 1000)
            raise StatusErrorException("Environment startup failed", payload=document) from error
        self._init_duration_ms = (time.monotonic() - started) * 1000
        self._init_output = process.output.take()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            process, self._process = self._process, None
        if process:
            self._last_output_tail = process.output.tail()
            process.kill()
        if self._tmp_dir:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
        if self._sandbox and self._sandbox.cgroup:
            self._sandbox.cgroup.remove()

    def _make_sandbox(self) -> Sandbox:
        """The memory and /tmp limits of this environment (see ``sandbox.py``)."""
        cfg = self.function_version.config
        memory = None
        cgroup = None
        if limits.enabled("memory"):
            memory = int(cfg.memory_size) * 1024 * 1024
            cgroup = MemoryCgroup.create(self.id, memory)
        tmp_mb = None
        if limits.enabled("tmp"):
            code_dir = self._code_dir().resolve()
            size = getattr(getattr(cfg, "ephemeral_storage", None), "size", None) or 512
            if Path("/tmp") in (code_dir, *code_dir.parents):
                LOG.warning(
                    "sluice-host: function code under /tmp (%s); /tmp is not made private", code_dir
                )
            elif private_tmp_supported():
                tmp_mb = int(size)
        return Sandbox(cgroup=cgroup, memory_limit_bytes=memory, tmp_size_mb=tmp_mb)

    def _spawn(self) -> FunctionProcess:
        with self._lock:
            if self._stopped.is_set():
                raise ShutdownDuringStartup("execution environment stopped")
            fv = self.function_version
            self._process = FunctionProcess(
                code_dir=self._code_dir(),
                env=self._env,
                pid_dir=_pid_dir(),
                label=f"{fv.id.function_name}:{fv.id.qualifier}/{self.id}",
                sandbox=self._sandbox,
            )
            return self._process

    def _code_dir(self) -> Path:
        return Path(self.function_version.config.code.get_unzipped_code_location())

    def _process_environment(self, env_vars: dict[str, str]) -> dict[str, str]:
        code_dir = str(self._code_dir())
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/opt/bin",
            "LD_LIBRARY_PATH": f"{code_dir}:{code_dir}/lib:/opt/lib",
            "LANG": "en_US.UTF-8",
        }
        env.update(
            (name, str(value))
            for name, value in env_vars.items()
            if value is not None and name not in _INIT_ONLY_VARIABLES
        )
        env["LAMBDA_TASK_ROOT"] = code_dir
        private_tmp = self._sandbox is not None and self._sandbox.tmp_size_mb is not None
        env["TMPDIR"] = "/tmp" if private_tmp else str(self._tmp_dir)
        return env

    # --- invocations ---

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        request_id = payload["invoke-id"]
        timeout_s = float(self.function_version.config.timeout)
        started = time.monotonic()
        deadline = started + timeout_s
        init_ms, self._init_duration_ms = self._init_duration_ms, None
        before = self._init_output
        self._init_output = ""

        process = self._process
        if process is not None and process.alive:
            before += process.output.take()  # written between invocations
        else:
            # the last process timed out or crashed: cold start inside this invocation, within its timeout
            cold_start = time.monotonic()
            try:
                process = self._spawn()
                process.ready.result(timeout=max(0.0, deadline - time.monotonic()))
                init_ms = (time.monotonic() - cold_start) * 1000
            except TimeoutError:
                return self._timed_out(request_id, process, before, started, timeout_s, None)
            except BaseException as error:
                output = process.output.take() if process else ""
                if process:
                    process.kill()
                error_type, document = _init_error(error, request_id)
                return self._result(
                    request_id,
                    document,
                    True,
                    before,
                    output,
                    started,
                    None,
                    init_ms,
                    "error",
                    [
                        f"INIT_REPORT Init Duration: {(time.monotonic() - cold_start) * 1000:.2f} ms\t"
                        f"Phase: invoke\tStatus: error\tError Type: {error_type}"
                    ],
                )

        invocation = Invocation(
            request_id=request_id,
            payload=(payload.get("payload") or "").encode(),
            function_arn=payload["invoked-function-arn"],
            trace_id=payload.get("trace-id") or "",
            deadline_ms=int((time.time() + max(0.0, deadline - time.monotonic())) * 1000),
        )
        process.submit(invocation)
        try:
            is_error, body = invocation.result.result(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return self._timed_out(request_id, process, before, started, timeout_s, init_ms)
        except ProcessExited as exited:
            process.output.eof.wait(timeout=1)
            output = process.output.take()
            message = _exit_message(request_id, exited)
            error_type = "Runtime.OutOfMemory" if process.out_of_memory else "Runtime.ExitError"
            memory = int(self.function_version.config.memory_size) if process.out_of_memory else None
            return self._result(
                request_id,
                _error_document(error_type, message),
                True,
                before,
                output,
                started,
                memory,
                init_ms,
                "error",
                [message, error_type],
                error_type=error_type,
            )
        except Stopped as stopped:
            output = process.output.take()
            return self._result(
                request_id,
                _error_document("Runtime.ExitError", f"RequestId: {request_id} Error: {stopped}"),
                True,
                before,
                output,
                started,
                None,
                init_ms,
                "error",
                [],
            )
        output = process.output.take(settle=_LOG_SETTLE_SECONDS)
        memory = process.max_memory_mb()
        too_large = limits.response_too_large(len(body)) if limits.enabled("payload") else None
        if too_large:
            return self._result(
                request_id,
                _error_document("Function.ResponseSizeTooLarge", too_large),
                True,
                before,
                output,
                started,
                memory,
                init_ms,
                "error",
                [f"{too_large} Function.ResponseSizeTooLarge"],
                error_type="Function.ResponseSizeTooLarge",
            )
        return self._result(request_id, body, is_error, before, output, started, memory, init_ms, None, [])

    def _timed_out(self, request_id, process, before, started, timeout_s, init_ms) -> InvocationResult:
        memory = process.max_memory_mb() if process else None
        if process:
            process.kill()
        output = process.output.take() if process else ""
        timestamp = datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        LOG.info(
            "%s: task %s timed out after %.2f seconds",
            self.function_version.qualified_arn,
            request_id,
            timeout_s,
        )
        return self._result(
            request_id,
            _error_document(
                "Sandbox.Timedout",
                f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds",
            ),
            True,
            before,
            output,
            started,
            memory,
            init_ms,
            "timeout",
            [f"{timestamp} {request_id} Task timed out after {timeout_s:.2f} seconds"],
        )

    def _result(
        self,
        request_id: str,
        body: bytes,
        is_error: bool,
        before: str,
        output: str,
        started: float,
        memory_mb: int | None,
        init_ms: float | None,
        status: str | None,
        notes: list[str],
        error_type: str | None = None,
    ) -> InvocationResult:
        duration = (time.monotonic() - started) * 1000
        report = [
            f"REPORT RequestId: {request_id}",
            f"Duration: {duration:.2f} ms",
            f"Billed Duration: {math.ceil(duration)} ms",
            f"Memory Size: {self.function_version.config.memory_size} MB",
            f"Max Memory Used: {memory_mb or 0} MB",
        ]
        if init_ms is not None:
            report.append(f"Init Duration: {init_ms:.2f} ms")
        if status:
            report.append(f"Status: {status}")
        if error_type:
            report.append(f"Error Type: {error_type}")
        parts = [
            before,
            f"START RequestId: {request_id} Version: {self.function_version.id.qualifier}\n",
            output,
            "".join(f"{note}\n" for note in notes),
            f"END RequestId: {request_id}\n",
            "\t".join(report) + "\n",
        ]
        logs = "".join(part if not part or part.endswith("\n") else part + "\n" for part in parts)
        return InvocationResult(request_id=request_id, payload=body, is_error=is_error, logs=logs)

    def get_logs(self) -> str:
        process = self._process
        return process.output.tail() if process else self._last_output_tail

    def _write_init_failure_logs(self, output: str, error_type: str, duration_ms: float) -> None:
        """A failed start never reaches an invocation, so LocalStack stores no
        logs for it; write them to the environment's log stream as Lambda does."""
        lines = [line for line in output.splitlines() if line.strip()]
        lines.append(
            f"INIT_REPORT Init Duration: {duration_ms:.2f} ms\tPhase: init\tStatus: error\tError Type: {error_type}"
        )
        threading.Thread(
            target=self._put_logs, args=(lines,), name="sluice-host-init-logs", daemon=True
        ).start()

    def _put_logs(self, lines: list[str]) -> None:
        from localstack.aws.connect import connect_to
        from localstack.utils.aws.client_types import ServicePrincipal

        fv = self.function_version
        group = self._env.get("AWS_LAMBDA_LOG_GROUP_NAME") or f"/aws/lambda/{fv.id.function_name}"
        stream = self._env.get("AWS_LAMBDA_LOG_STREAM_NAME") or self.id
        try:
            logs = connect_to.with_assumed_role(
                role_arn=fv.config.role,
                service_principal=ServicePrincipal.lambda_,
                region_name=fv.id.region,
            ).logs
            for create in (
                lambda: logs.create_log_group(logGroupName=group),
                lambda: logs.create_log_stream(logGroupName=group, logStreamName=stream),
            ):
                try:
                    create()
                except logs.exceptions.ResourceAlreadyExistsException:
                    pass
            now = int(time.time() * 1000)
            logs.put_log_events(
                logGroupName=group,
                logStreamName=stream,
                logEvents=[{"timestamp": now, "message": line} for line in lines],
            )
        except Exception as e:  # noqa: BLE001 (best effort, like LocalStack's own log handler)
            LOG.debug("could not write init failure logs of %s: %s", fv.qualified_arn, e)

    # --- versions ---

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        cfg = function_version.config
        if cfg.package_type != PackageType.Zip or not cfg.code:
            raise LambdaRuntimeException("sluice-host runs only Zip-packaged functions")
        if not (cfg.runtime or "").startswith("provided"):
            raise LambdaRuntimeException(
                f"sluice-host runs only OS-only runtimes (provided.al2023, provided.al2), not {cfg.runtime}"
            )
        if cfg.layers:
            raise LambdaRuntimeException("sluice-host does not support layers")
        architecture = cfg.architectures[0] if cfg.architectures else Architecture.x86_64
        machine = platform.machine().lower()
        if not config.LAMBDA_IGNORE_ARCHITECTURE and machine not in _HOST_MACHINES.get(architecture, set()):
            raise LambdaRuntimeException(
                f"function architecture {architecture} cannot run on this {machine} host "
                "(set LAMBDA_IGNORE_ARCHITECTURE=1 to try anyway)"
            )
        cfg.code.prepare_for_execution()
        bootstrap = Path(cfg.code.get_unzipped_code_location()) / "bootstrap"
        if not bootstrap.is_file():
            raise LambdaRuntimeException("the deployment package has no 'bootstrap' at its root")
        if not os.access(bootstrap, os.X_OK):
            bootstrap.chmod(0o755)

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        # LocalStack deletes the unzipped code with the code object; environments are stopped by the service
        pass

    @classmethod
    def validate_environment(cls) -> bool:
        if platform.system() != "Linux":
            LOG.warning("sluice-host runs functions as local processes and needs Linux (prctl, /proc)")
            return False
        return True
