"""A fault-injecting HTTP proxy between the functions and LocalStack.

A stack deployed with ``AwsEndpointUrl=<proxy url>`` sends every AWS call its functions
make through this proxy (LocalStack's own event wiring — S3 notifications, event source
mappings, API Gateway — does not). Per service and operation, with a seeded probability,
the proxy answers what AWS answers on a bad day:

- ``throttle``: the service's throttling error (DynamoDB/Kinesis
  ``ProvisionedThroughputExceededException``, S3 ``SlowDown`` 503, SQS/SNS/Secrets Manager
  ``ThrottlingException``/``Throttling``, Lambda ``TooManyRequestsException`` 429);
- ``error500``: an internal error (500) of the service's protocol;
- ``drop``: the connection closed without an answer, before the request reaches LocalStack;
- ``drop_response``: the request forwarded (LocalStack acts on it), then the connection closed
  without an answer — a response lost on the way back, after which a retry repeats a write;
- ``latency``: a delay (seconds, uniform in ``(low, high)``) before forwarding;
- ``deny``: a permanent refusal (S3 ``AccessDenied`` 403, elsewhere ``AccessDeniedException``
  400), which the SDKs and the functions do not retry — e.g. a broken bucket policy or key;
- ``partial``: for Kinesis ``PutRecords`` and SQS ``SendMessageBatch``, each entry fails with
  this probability inside a successful response. Failed entries are removed from the
  request before it is forwarded, so — as in AWS — a failed entry is not written.

Randomness alone cannot promise that a rare fault happens in a short run, so a rule may also
name ``first``: the outcomes forced, in order, on its first matching calls (``"pass"`` forces
none; ``"partial"`` fails the first entry). A test that asserts "a response was lost" then holds
on every run, whatever the seed and the number of calls.

Every decision is counted in ``proxy.stats`` (``(service, operation, outcome) -> n``), so a
test can show that faults really happened. Use::

    proxy = FaultProxy("http://localhost:4566", seed=7)
    proxy.start()                     # proxy.url -> "http://127.0.0.1:<port>"
    proxy.set_rules([Rule("kinesis", "PutRecords", throttle=0.2, partial=0.02), Rule(error500=0.05)])
    ...
    proxy.stop()
"""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Services whose errors are JSON documents (awsJson / restJson protocols).
_JSON_SERVICES = {"kinesis", "dynamodb", "sqs", "secretsmanager", "lambda", "logs", "events", "kms"}

_THROTTLE = {
    "dynamodb": (400, "ProvisionedThroughputExceededException"),
    "kinesis": (400, "ProvisionedThroughputExceededException"),
    "s3": (503, "SlowDown"),
    "sqs": (400, "ThrottlingException"),
    "sns": (400, "Throttling"),
    "lambda": (429, "TooManyRequestsException"),
}

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
}

# The rates most fault tests use for a call they do not single out.
BAD_DAY = {"throttle": 0.2, "error500": 0.05, "drop": 0.02, "latency": (0.0, 0.02)}


def describe(rules: list[Rule]) -> str:
    """The rules in words, for the reliability table."""
    parts = []
    for r in rules:
        kinds = [
            f"{k} {round(getattr(r, k) * 100)}%"
            for k in ("throttle", "error500", "drop", "drop_response", "deny", "partial")
            if getattr(r, k)
        ]
        if r.latency:
            kinds.append(f"latency {int(r.latency[0] * 1000)}-{int(r.latency[1] * 1000)} ms")
        if r.first:
            kinds.append(f"first calls forced: {'/'.join(r.first)}")
        parts.append(f"{r.service} {r.operation}{' (matching requests)' if r.when else ''}: {', '.join(kinds)}")
    return "; ".join(parts)


FORCEABLE = frozenset({"pass", "throttle", "error500", "drop", "drop_response", "deny", "partial"})

_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


@dataclass
class Rule:
    """Faults for calls matching ``service`` and ``operation`` ("*" matches any)."""

    service: str = "*"
    operation: str = "*"
    throttle: float = 0.0
    error500: float = 0.0
    drop: float = 0.0
    partial: float = 0.0
    latency: tuple[float, float] | None = None
    drop_response: float = 0.0
    # Only requests for which ``when(method, path, body)`` is true (e.g. a marker in the body).
    when: Callable[[str, str, bytes], bool] | None = None
    deny: float = 0.0
    # Outcomes forced on the rule's first matching calls, in order, before the dice take over.
    first: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.first) - FORCEABLE
        if unknown:
            raise ValueError(f"unknown forced outcome(s) {sorted(unknown)}; known: {sorted(FORCEABLE)}")

    def matches(self, service: str, operation: str) -> bool:
        return self.service in ("*", service) and self.operation in ("*", operation)

    def applies(self, service: str, operation: str, request: tuple[str, str, bytes] | None) -> bool:
        return self.matches(service, operation) and (self.when is None or request is None or self.when(*request))


def classify(method: str, path: str, headers, body: bytes) -> tuple[str, str]:
    """(service, operation) of a signed AWS request."""
    match = _CREDENTIAL_SCOPE.search(headers.get("Authorization", ""))
    service = match.group(1) if match else "unknown"
    target = headers.get("X-Amz-Target")
    if target:
        return service, target.rsplit(".", 1)[-1]
    if service == "s3":
        parsed = urllib.parse.urlsplit(path)
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        has_key = parsed.path.strip("/").count("/") >= 1
        if method == "PUT":
            if not has_key:
                return service, "CreateBucket"
            return service, "CopyObject" if headers.get("x-amz-copy-source") else "PutObject"
        if method == "GET":
            if has_key:
                return service, "GetObject"
            return service, "ListObjectsV2" if "list-type" in query else "ListObjects"
        if method == "HEAD":
            return service, "HeadObject" if has_key else "HeadBucket"
        if method == "DELETE":
            return service, "DeleteObject" if has_key else "DeleteBucket"
        if method == "POST" and "delete" in query:
            return service, "DeleteObjects"
        return service, method
    if service == "lambda":
        if re.match(r"^/2015-03-31/functions/[^/]+/invocations", path):
            return service, "Invoke"
        return service, path
    # query protocol (SNS, STS, ...): Action=... in the form body
    if body:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:
            return service, form["Action"][0]
    return service, method


def error_response(service: str, status: int, code: str, message: str) -> tuple[int, dict, bytes]:
    request_id = str(uuid.uuid4())
    if service in _JSON_SERVICES:
        body = json.dumps({"__type": code, "message": message}).encode()
        content_type = "application/x-amz-json-1.0" if service in ("dynamodb", "sqs") else "application/json"
        headers = {"Content-Type": content_type, "x-amzn-ErrorType": code, "x-amzn-RequestId": request_id}
        if service == "sqs":
            headers["x-amzn-query-error"] = f"{code};Receiver"
        return status, headers, body
    if service == "s3":
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        return status, {"Content-Type": "application/xml", "x-amz-request-id": request_id}, body
    body = (
        f'<ErrorResponse xmlns="http://{service}.amazonaws.com/doc/2010-03-31/"><Error><Type>Receiver</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
    return status, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body


class FaultProxy:
    def __init__(self, upstream: str, seed: int = 0, host: str = "127.0.0.1", port: int = 0):
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "localhost", parsed.port or 80)
        self._rules: list[Rule] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.stats: Counter = Counter()
        self._forced: dict[int, list[str]] = {}
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._server.fault_proxy = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set_rules(self, rules: list[Rule], seed: int | None = None) -> None:
        """Replaces the rules (first match wins) and resets the statistics."""
        with self._lock:
            self._rules = list(rules)
            self._forced = {id(r): list(r.first) for r in self._rules}
            self.stats = Counter()
            if seed is not None:
                self._random.seed(seed)

    def clear(self) -> None:
        self.set_rules([])

    def summary(self, outcome: str | None = None) -> dict[str, int]:
        """``{"service.Operation outcome": n}`` (optionally one outcome only), sorted."""
        with self._lock:
            items = sorted(self.stats.items())
        return {f"{s}.{o} {out}": n for (s, o, out), n in items if outcome in (None, out)}

    def injected(self) -> int:
        """How many faults (whole calls or entries) were injected since the rules were set."""
        with self._lock:
            return sum(n for (_, _, out), n in self.stats.items() if out != "pass")

    # --- decisions ---

    def _rule(self, service: str, operation: str, request: tuple[str, str, bytes] | None = None) -> Rule | None:
        with self._lock:
            rules = list(self._rules)
        return next((r for r in rules if r.applies(service, operation, request)), None)

    def _next_forced(self, rule: Rule) -> str | None:
        """The outcome forced on this call of ``rule``, if any is left."""
        with self._lock:
            queue = self._forced.get(id(rule))
            return queue.pop(0) if queue else None

    def _roll(self, probability: float) -> bool:
        if probability <= 0:
            return False
        with self._lock:
            return self._random.random() < probability

    def _count(self, service: str, operation: str, outcome: str, n: int = 1) -> None:
        with self._lock:
            self.stats[(service, operation, outcome)] += n

    def _uniform(self, low: float, high: float) -> float:
        with self._lock:
            return self._random.uniform(low, high)

    # --- the HTTP side ---

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 (quiet)
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(self, status: int, headers: dict, body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _hang_up(self) -> None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def _handle(self) -> None:
                body = self._body()
                service, operation = classify(self.command, self.path, self.headers, body)
                rule = proxy._rule(service, operation, (self.command, self.path, body))
                if rule is not None:
                    forced = proxy._next_forced(rule)

                    def fault(outcome: str, probability: float) -> bool:
                        return forced == outcome if forced is not None else proxy._roll(probability)

                    if rule.latency:
                        time.sleep(proxy._uniform(*rule.latency))
                    if fault("drop", rule.drop):
                        proxy._count(service, operation, "drop")
                        self._hang_up()
                        return
                    if fault("throttle", rule.throttle):
                        proxy._count(service, operation, "throttle")
                        status, code = _THROTTLE.get(service, (400, "ThrottlingException"))
                        self._send(*error_response(service, status, code, "Rate exceeded (injected)"))
                        return
                    if fault("error500", rule.error500):
                        proxy._count(service, operation, "error500")
                        code = "InternalError" if service in ("s3", "sqs") else "InternalFailure"
                        self._send(*error_response(service, 500, code, "We encountered an internal error (injected)"))
                        return
                    if fault("deny", rule.deny):
                        proxy._count(service, operation, "deny")
                        code = "AccessDenied" if service == "s3" else "AccessDeniedException"
                        self._send(*error_response(service, 403 if service == "s3" else 400, code, "Access Denied (injected)"))
                        return
                    if fault("drop_response", rule.drop_response):
                        self._forward(body)
                        proxy._count(service, operation, "drop_response")
                        self._hang_up()
                        return
                    if ((forced is None and rule.partial > 0) or forced == "partial") and (service, operation) in _PARTIAL:
                        partial = _PARTIAL[(service, operation)]
                        self._send(*partial(self, body, rule, service, operation, forced == "partial"))
                        return
                proxy._count(service, operation, "pass")
                self._send(*self._forward(body))

            def _forward(self, body: bytes, headers: dict | None = None) -> tuple[int, dict, bytes]:
                connection = http.client.HTTPConnection(*proxy.upstream, timeout=300)
                try:
                    out = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    out.update(headers or {})
                    out["Content-Length"] = str(len(body))
                    connection.request(self.command, self.path, body=body, headers=out)
                    response = connection.getresponse()
                    data = response.read()
                    return response.status, dict(response.getheaders()), data
                finally:
                    connection.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

        return Handler


def _partial_put_records(handler, body: bytes, rule: Rule, service: str, operation: str, force: bool = False):
    proxy = _owner(handler)
    request = json.loads(body)
    records = request.get("Records", [])
    failed = {0} if force and records else {i for i in range(len(records)) if proxy._roll(rule.partial)}
    if failed:
        proxy._count(service, operation, "partial_entries", len(failed))
    kept = [r for i, r in enumerate(records) if i not in failed]
    results = iter([])
    status, headers = 200, {"Content-Type": "application/x-amz-json-1.1"}
    if kept:
        status, headers, data = handler._forward(json.dumps({**request, "Records": kept}).encode())
        if status != 200:
            return status, headers, data
        results = iter(json.loads(data).get("Records", []))
    else:
        data = b"{}"
    out, failed_count = [], 0
    for i in range(len(records)):
        if i in failed:
            failed_count += 1
            out.append(
                {
                    "ErrorCode": "ProvisionedThroughputExceededException",
                    "ErrorMessage": "Rate exceeded for shard (injected)",
                }
            )
        else:
            entry = next(results)
            failed_count += 1 if entry.get("ErrorCode") else 0
            out.append(entry)
    answer = {**(json.loads(data) if kept else {}), "Records": out, "FailedRecordCount": failed_count}
    proxy._count(service, operation, "pass")
    return 200, headers, json.dumps(answer).encode()


def _partial_send_message_batch(handler, body: bytes, rule: Rule, service: str, operation: str, force: bool = False):
    proxy = _owner(handler)
    request = json.loads(body)
    entries = request.get("Entries", [])
    failed = entries[:1] if force else [e for e in entries if proxy._roll(rule.partial)]
    if failed:
        proxy._count(service, operation, "partial_entries", len(failed))
    failed_ids = {e["Id"] for e in failed}
    kept = [e for e in entries if e["Id"] not in failed_ids]
    answer = {"Successful": [], "Failed": []}
    headers = {"Content-Type": "application/x-amz-json-1.0"}
    if kept:
        status, headers, data = handler._forward(json.dumps({**request, "Entries": kept}).encode())
        if status != 200:
            return status, headers, data
        answer = json.loads(data)
        answer.setdefault("Successful", [])
        answer.setdefault("Failed", [])
    answer["Failed"].extend(
        {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "injected entry failure"}
        for e in failed
    )
    proxy._count(service, operation, "pass")
    return 200, headers, json.dumps(answer).encode()


def _owner(handler) -> FaultProxy:
    return handler.server.fault_proxy


_PARTIAL = {
    ("kinesis", "PutRecords"): _partial_put_records,
    ("sqs", "SendMessageBatch"): _partial_send_message_batch,
}
