"""The public Lambda Runtime API (2018-06-01), served to one function process.

https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html — what
``lambda_runtime`` (and every other Lambda runtime client) speaks at
``AWS_LAMBDA_RUNTIME_API``. Each function process gets its own server on a
random loopback port; the server only translates HTTP into calls on the
``RuntimeSession`` it serves.
"""

import json
import logging
import re
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

LOG = logging.getLogger(__name__)

PREFIX = "/2018-06-01/runtime"
_INVOCATION_PATH = re.compile(rf"^{PREFIX}/invocation/(?P<request_id>[^/]+)/(?P<kind>response|error)$")


class NextInvocation(Protocol):
    request_id: str
    payload: bytes
    function_arn: str
    trace_id: str
    deadline_ms: int
    client_context: str | None


class RuntimeSession(Protocol):
    """What the Runtime API needs from the executor side of one function process."""

    def next_invocation(self) -> NextInvocation | None:
        """Blocks until there is work; None when the process is being shut down."""

    def complete(self, request_id: str, body: bytes, is_error: bool) -> bool:
        """Result of an invocation; False if ``request_id`` is not the one in flight."""

    def init_failed(self, body: bytes) -> bool:
        """``/runtime/init/error``; False if initialisation had already finished."""


class RuntimeApiServer(ThreadingHTTPServer):
    daemon_threads = True
    # lambda_runtime keeps one connection open and long-polls /next on it
    request_queue_size = 16

    def __init__(self, session: RuntimeSession):
        self.session = session
        super().__init__(("127.0.0.1", 0), _RuntimeApiHandler)

    def handle_error(self, request, client_address):
        # a killed function process leaves broken connections behind; that is not news
        LOG.debug(
            "runtime api %s: connection from %s ended abruptly", self.address, client_address, exc_info=True
        )

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host}:{port}"


class _RuntimeApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RuntimeApiServer

    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        LOG.debug("runtime api %s: " + format, self.server.address, *args)

    def do_GET(self):
        if self.path != f"{PREFIX}/invocation/next":
            return self._reply(HTTPStatus.NOT_FOUND, _error("UnknownPath", f"GET {self.path}"))
        invocation = self.server.session.next_invocation()
        if invocation is None:
            self.close_connection = True
            return self._reply(HTTPStatus.GONE, _error("Shutdown", "execution environment is stopping"))
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
            "Lambda-Runtime-Trace-Id": invocation.trace_id,
            "Content-Type": "application/json",
        }
        if invocation.client_context:
            headers["Lambda-Runtime-Client-Context"] = invocation.client_context
        self._reply(HTTPStatus.OK, invocation.payload, headers)

    def do_POST(self):
        body = self._read_body()
        if self.path == f"{PREFIX}/init/error":
            if self.server.session.init_failed(body):
                return self._reply(HTTPStatus.ACCEPTED, b'{"status":"OK"}')
            return self._reply(
                HTTPStatus.FORBIDDEN, _error("InvalidStateTransition", "init already finished")
            )
        match = _INVOCATION_PATH.match(self.path)
        if not match:
            return self._reply(HTTPStatus.NOT_FOUND, _error("UnknownPath", f"POST {self.path}"))
        is_error = match["kind"] == "error"
        if is_error:
            body = _error_body(body, self.headers.get("Lambda-Runtime-Function-Error-Type"))
        if self.server.session.complete(match["request_id"], body, is_error):
            return self._reply(HTTPStatus.ACCEPTED, b'{"status":"OK"}')
        return self._reply(
            HTTPStatus.BAD_REQUEST,
            _error("InvalidRequestID", f"no invocation {match['request_id']} in flight"),
        )

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        # streamed responses (Lambda-Runtime-Function-Response-Mode: streaming) are buffered whole
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers (error type/body of a failed stream) are ignored
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _reply(self, status: HTTPStatus, body: bytes, headers: dict[str, str] | None = None):
        self.send_response(status)
        for name, value in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _error(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def _error_body(body: bytes, header_error_type: str | None) -> bytes:
    """The error document as the function sent it; a body that is not a JSON
    object is wrapped the way Lambda does, typed by the error-type header."""
    try:
        if isinstance(json.loads(body or b"null"), dict):
            return body
    except ValueError:
        pass
    return json.dumps(
        {
            "errorType": header_error_type or "Runtime.Unknown",
            "errorMessage": body.decode("utf-8", "replace"),
        }
    ).encode()
