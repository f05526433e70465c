"""Shared fixtures and helpers for end-to-end tests against the local LocalStack.

Use from any test module in tests/e2e:

    def test_something(deploy, aws):
        outputs = deploy("infra/pipeline.yaml")          # stack named after this module, deleted after it
        aws("s3").put_object(Bucket=outputs["BucketName"], Key="k", Body=b"...")
        lines = wait_until(lambda: log_lines(outputs["FunctionName"], contains="k"), timeout=30)

- ``localstack`` (session): LocalStack is up (``infra/localstack/up.sh``); returns the endpoint.
  Stopped at the end only if this session started it (and ``SLUICE_KEEP_LOCALSTACK`` is unset).
- ``aws`` (session): ``aws("lambda")`` -> boto3 client for LocalStack (test/test, us-east-1).
- ``deploy`` (module): ``deploy(template, **parameters) -> outputs``; the stack name is unique
  per module and run, so modules and people can share one LocalStack. Deleted after the module
  unless ``SLUICE_KEEP_STACKS=1``. Zips come from ``just build`` (``infra/deploy.py`` conventions).
- ``client(service)``, ``wait_until(fn, timeout)``, ``log_lines(function_name, contains)``,
  ``invoke(function_name, payload)``: plain helpers, importable with ``from conftest import …``.
Every test gets a pytest-timeout limit (default 180 s; override with ``@pytest.mark.timeout``).
"""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "infra"))

import deploy as sluice_deploy  # noqa: E402  (infra/deploy.py)

PORT = int(os.environ.get("SLUICE_LOCALSTACK_PORT") or 4566)
ENDPOINT = f"http://localhost:{PORT}"
REGION = "us-east-1"
ACCOUNT = "000000000000"
DEFAULT_TIMEOUT = 180
RUN_ID = uuid.uuid4().hex[:6]


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


# --- helpers ---


def client(service: str, endpoint: str = ENDPOINT, **config):
    """A boto3 client for LocalStack; ``config`` overrides botocore Config options."""
    options = {"s3": {"addressing_style": "path"}, "retries": {"max_attempts": 3}, "read_timeout": 120}
    options.update(config)
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(**options),
    )


def wait_until(fn, timeout: float = 30, interval: float = 0.5, message: str = ""):
    """Calls ``fn`` until it returns something truthy, and returns that. Exceptions
    count as "not yet". Fails the test with the last value or error after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001
            last = e
        if time.monotonic() > deadline:
            pytest.fail(
                f"{message or getattr(fn, '__name__', 'condition')} not met after {timeout}s; last: {last!r}"
            )
        time.sleep(interval)


def log_lines(function_name: str, contains: str | None = None, endpoint: str = ENDPOINT) -> list[str]:
    """All log lines of a function in CloudWatch Logs (optionally only those containing ``contains``)."""
    logs = client("logs", endpoint)
    lines = []
    kwargs = {"logGroupName": f"/aws/lambda/{function_name}"}
    try:
        while True:
            page = logs.filter_log_events(**kwargs)
            lines.extend(event["message"].rstrip("\n") for event in page.get("events", []))
            token = page.get("nextToken")
            if not token or token == kwargs.get("nextToken"):
                break
            kwargs["nextToken"] = token
    except logs.exceptions.ResourceNotFoundException:
        return []
    return [line for line in lines if contains is None or contains in line]


def invoke(function_name: str, payload, endpoint: str = ENDPOINT, **kwargs) -> tuple[dict, object]:
    """Invokes synchronously; returns (response, decoded JSON payload)."""
    response = client("lambda", endpoint).invoke(
        FunctionName=function_name, Payload=json.dumps(payload).encode(), **kwargs
    )
    body = response["Payload"].read()
    return response, json.loads(body) if body else None


def drain_queue(queue_url: str, wait_seconds: int = 0) -> list[str]:
    """The bodies of every message on a queue, each deleted once read."""
    sqs = client("sqs")
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds)
        messages = got.get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def failure_records(queue_url: str) -> list[dict]:
    """Every record on a Lambda on-failure queue, each deleted once read."""
    return [json.loads(body) for body in drain_queue(queue_url)]


def marker() -> str:
    """A string unique to one test run, to find its own log lines and messages."""
    return f"m{uuid.uuid4().hex[:12]}"


# --- fixtures ---


@pytest.fixture(scope="session")
def localstack():
    if localstack_healthy():
        yield ENDPOINT
        return
    subprocess.run(["bash", str(REPO / "infra" / "localstack" / "up.sh")], check=True)
    yield ENDPOINT
    if not os.environ.get("SLUICE_KEEP_LOCALSTACK"):
        subprocess.run(["bash", str(REPO / "infra" / "localstack" / "down.sh")], check=False)


def localstack_healthy(port: int = PORT) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_localstack/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def aws(localstack):
    return lambda service, **config: client(service, localstack, **config)


@pytest.fixture(scope="module")
def deploy(localstack, request):
    module = Path(request.module.__file__).stem.removeprefix("test_").replace("_", "-")
    deployed = []

    def _deploy(template, stack: str | None = None, **parameters) -> dict[str, str]:
        name = stack or f"e2e-{module}-{RUN_ID}"
        path = Path(template)
        if not path.is_absolute():
            path = REPO / path
        outputs = sluice_deploy.deploy(
            path, name, parameters=parameters or None, endpoint_url=localstack, region=REGION, log=print
        )
        if name not in deployed:
            deployed.append(name)
        return outputs

    yield _deploy
    if not os.environ.get("SLUICE_KEEP_STACKS"):
        for name in deployed:
            try:
                sluice_deploy.delete(name, endpoint_url=localstack, region=REGION)
            except Exception as e:  # noqa: BLE001 (cleanup must not hide the test result)
                print(f"could not delete stack {name}: {e}")


@pytest.fixture(scope="session")
def pipeline(localstack):
    """The whole pipeline (``infra/pipeline.yaml``) deployed once per session as stack
    ``$SLUICE_E2E_STACK`` (default ``sluice-e2e``); returns its outputs. Kept after the
    session (redeploying an unchanged stack is quick); every referenced zip must be built."""
    name = os.environ.get("SLUICE_E2E_STACK", "sluice-e2e")
    return sluice_deploy.deploy(
        REPO / "infra" / "pipeline.yaml", name, endpoint_url=localstack, region=REGION, log=print
    )


# --- fault injection (tests/e2e/faultproxy.py) ---

FAULT_SEED = int(os.environ.get("SLUICE_FAULT_SEED") or 20261122)


FAULT_STACK_RESERVATIONS = {"CrashRouterReservedConcurrency": "12", "IngestApiReservedConcurrency": "50"}
FAULT_STACK_CAPACITY = {"StreamCapacity": "1"}


@pytest.fixture(scope="session")
def fault_proxy(localstack):
    """The fault-injecting proxy in front of LocalStack (no rules yet: everything passes).
    Seeded by ``$SLUICE_FAULT_SEED`` so a run's fault sequence can be replayed."""
    from faultproxy import FaultProxy

    proxy = FaultProxy(localstack, seed=FAULT_SEED).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def fake_api():
    """The fake external job API job-poller's stacks point ``JobApiBaseUrl`` at."""
    from fakejobapi import FakeJobApi

    api = FakeJobApi()
    api.thread.start()
    yield api
    api.server.shutdown()
    api.server.server_close()


@pytest.fixture
def faults(fault_proxy):
    """``fault_proxy``, its rules cleared when the test ends (pass or fail)."""
    yield fault_proxy
    fault_proxy.clear()


@pytest.fixture(scope="session")
def faulty_pipeline(localstack, fault_proxy):
    """The whole pipeline deployed as stack ``$SLUICE_FAULT_STACK`` (default ``sluice-faults``)
    with ``AwsEndpointUrl`` pointing at ``fault_proxy``: every AWS call its functions make
    goes through the proxy. Returns the stack outputs. Tests set the proxy's rules
    (``fault_proxy.set_rules([...])``) and clear them when done."""
    name = os.environ.get("SLUICE_FAULT_STACK", "sluice-faults")
    outputs = sluice_deploy.deploy(
        REPO / "infra" / "pipeline.yaml",
        name,
        parameters={
            "AwsEndpointUrl": fault_proxy.url,
            # Reads retry transient failures until the invocation's deadline: a short
            # timeout keeps "fails every attempt, then the failure queue" tests short.
            "AvroConverterTimeoutSeconds": "20",
            # Reservations as an operator would set them (the default stack reserves none):
            # test_faults_crash_router.py checks each one is applied.
            **FAULT_STACK_RESERVATIONS,
            # The default stack's stream is on-demand; this one has a provisioned shard, so
            # both capacity modes deploy in every run (test_scale.py checks each).
            **FAULT_STACK_CAPACITY,
        },
        endpoint_url=localstack,
        region=REGION,
        log=print,
    )
    yield outputs
    fault_proxy.clear()


def record_reliability(path: str, **row) -> None:
    """Keeps one row of docs/RELIABILITY.md's table (a fault test's workload, faults and
    counts) in ``$SLUICE_CACHE/reliability/<path>.json``; ``python
    tests/e2e/reliability_table.py`` renders the rows into the document."""
    cache = Path(os.environ.get("SLUICE_CACHE") or Path.home() / ".cache" / "sluice")
    out = cache / "reliability"
    out.mkdir(parents=True, exist_ok=True)
    row = {"path": path, "seed": FAULT_SEED, "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **row}
    (out / f"{path}.json").write_text(json.dumps(row, indent=2) + "\n")
    print(f"reliability {path}: {json.dumps(row)}")
