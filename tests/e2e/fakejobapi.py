"""A fake external job API for job-poller's end-to-end tests: a Python http.server on
127.0.0.1 that the function reaches because the host executor runs the release bootstrap
as a local process. Each job's duration is chosen by a word in its object key."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeJobApi:
    """POST /jobs {source, idempotency_key} -> {job_id}; GET /jobs/{id} -> {status}.

    Durations: the first rule whose word is in the object key wins (seconds);
    keys containing "fail" end FAILED, keys containing "vanish" are forgotten (404);
    "verbose" jobs succeed with a 300 KB message (over SNS's 256 KiB), "flood" jobs with
    a 2 MiB one (over the poller's default 1 MiB read limit)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.token = None
        self.durations: list[tuple[str, float]] = []
        self.jobs: dict[str, dict] = {}
        self.by_key: dict[str, str] = {}
        self.starts: list[dict] = []  # every POST, duplicates included
        self.refused = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def duration_for(self, key: str) -> float:
        for word, seconds in self.durations:
            if word in key:
                return seconds
        return 1.0

    def starts_for(self, key: str) -> list[dict]:
        with self.lock:
            return [s for s in self.starts if s["source"]["key"] == key]

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output readable
                pass

            def _answer(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if self.headers.get("authorization") == f"Bearer {api.token}":
                    return True
                with api.lock:
                    api.refused += 1
                self._answer(401, {"error": "bad token"})
                return False

            def do_POST(self):
                if self.path != "/jobs":
                    return self._answer(404, {"error": "no such route"})
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                if not self._authorised():
                    return
                key = body["idempotency_key"]
                with api.lock:
                    api.starts.append(body)
                    if key in api.by_key:
                        return self._answer(200, {"job_id": api.by_key[key], "status": "RUNNING"})
                    job_id = f"job-{len(api.jobs) + 1}"
                    object_key = body["source"]["key"]
                    api.jobs[job_id] = {
                        "ends": time.monotonic() + api.duration_for(object_key),
                        "fails": "fail" in object_key,
                        "vanishes": "vanish" in object_key,
                        "message_bytes": 300_000 if "verbose" in object_key
                        else 2 * 1024 * 1024 if "flood" in object_key else 0,
                    }
                    api.by_key[key] = job_id
                self._answer(201, {"job_id": job_id, "status": "RUNNING"})

            def do_GET(self):
                if not self._authorised():
                    return
                job_id = self.path.removeprefix("/jobs/")
                with api.lock:
                    job = api.jobs.get(job_id)
                if job is None or job["vanishes"]:
                    return self._answer(404, {"error": "no such job"})
                if time.monotonic() < job["ends"]:
                    return self._answer(200, {"job_id": job_id, "status": "RUNNING"})
                if job["fails"]:
                    return self._answer(200, {"job_id": job_id, "status": "FAILED", "message": "bad rows"})
                if job["message_bytes"]:
                    lines = "".join(f"row {n} loaded\n" for n in range(job["message_bytes"] // 10))
                    message = lines[: job["message_bytes"]]
                    return self._answer(200, {"job_id": job_id, "status": "SUCCEEDED", "message": message})
                return self._answer(200, {"job_id": job_id, "status": "SUCCEEDED", "message": "loaded"})

        return Handler
