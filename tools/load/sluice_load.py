#!/usr/bin/env python3
"""Load test: ingest -> Kinesis -> archive at a bounded rate, then count every event in the archive.

    python tools/load/sluice_load.py --rate N --seconds S [--outputs FILE | --stack NAME]
                                     [--per-request B] [--clients C] [--keys spread|hot]
                                     [--settle S] [--endpoint-url URL] [--json FILE]

Sends ``rate`` player events per second for ``seconds`` seconds to a deployed stack's
``POST /events`` (NDJSON requests of ``per-request`` events, ``clients`` requests in flight at
most), behaving as the README tells a client to: a ``503`` is resent with exactly the events
its ``failedEvents`` lists, after ``Retry-After``; a ``429`` (API Gateway throttling) is resent
whole after a pause. Each event carries this run's id and its number. Then it reads the
archive bucket until every accepted event is there (or nothing new arrived for ``settle``
seconds) and prints:

- sent: events generated; accepted: answered as written (a ``202``, or the written part of a
  ``503``); refused: never accepted (the client gave up, or a ``4xx``);
- throttled: ``429`` requests and events a ``503`` listed; resent: event sends after the first;
- archived: distinct events found in the archive; lost: accepted but not archived;
  duplicated: archive lines beyond one per event; unacknowledged: archived but never answered
  as written (a request cut off after its write);
- the achieved send rate, how long the archive took to catch up after the last send, and the
  time from ingest's receive stamp to the object holding the event; the rate counts as
  sustained when nothing was lost, duplicated or refused and the client kept 95% of it.

Only loopback endpoints are accepted (LocalStack on this machine): every loop is bounded by
the run's time and by ``--max-attempts``, and the run stops by itself. Exit 0 when nothing was
lost, duplicated or refused, 1 otherwise, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import bz2
import ipaddress
import json
import os
import queue
import random
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

import boto3
from botocore.config import Config

REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
# Players in the spread key space: the partition key field's values (IngestPartitionKeyField,
# player_id by default); a hot run sends every event with one key.
PLAYERS = 10_000
SHARD_IN_KEY = re.compile(r"shardId-[0-9]+")


class UsageError(Exception):
    pass


def localstack_endpoint() -> str:
    return f"http://localhost:{os.environ.get('SLUICE_LOCALSTACK_PORT') or 4566}"


def require_loopback(url: str) -> None:
    """Refuses any endpoint that is not on this machine: a load test never leaves it."""
    host = urlparse(url).hostname
    if not host:
        raise UsageError(f"endpoint {url!r} has no host")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as e:
        raise UsageError(f"endpoint host {host!r} does not resolve: {e}") from None
    remote = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    if remote:
        raise UsageError(
            f"endpoint {url!r} resolves to {', '.join(remote)}: load tests only target loopback addresses"
        )


# --- the workload ---

EVENT_TYPES = ("heartbeat", "heartbeat", "heartbeat", "play", "pause", "buffer_start", "buffer_end", "seek")
CDNS = ("cdn-a", "cdn-b", "cdn-c")
COUNTRIES = ("US", "DE", "BR", "IN", "GB", "FR", "JP", "CA")


def player_event(run: str, n: int, rng: random.Random, keys: str) -> dict:
    """A video-player event of about half a kilobyte, like the converter's sample, numbered."""
    player = 0 if keys == "hot" else rng.randrange(PLAYERS)
    session = rng.getrandbits(48)
    return {
        "load_run": run,
        "n": n,
        "player_id": f"player-{player:06}",
        "PTS": int(time.time() * 1000),
        "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "event_type": rng.choice(EVENT_TYPES),
        "session_id": f"s-{session:012x}",
        "content_id": f"c-{rng.randrange(50_000):06}",
        "device_id": f"d-{session ^ 0xD:012x}",
        "content_type": "vod",
        "position_ms": rng.randrange(3_600_000),
        "bitrate_kbps": rng.choice((800, 1600, 3200, 6000)),
        "resolution": rng.choice(("640x360", "1280x720", "1920x1080")),
        "buffer_ms": rng.randrange(30_000),
        "cdn": rng.choice(CDNS),
        "country": rng.choice(COUNTRIES),
        "player": {"name": "shaka", "version": "4.9.2"},
        "device": {"platform": "web", "os_version": "14.2", "model": "model-7", "app_version": "5.12.0"},
    }


def ndjson(events: list[dict]) -> bytes:
    return "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events).encode()


# --- the client ---


@dataclass
class Counts:
    sent: int = 0
    accepted: int = 0
    refused: int = 0
    requests: int = 0
    status_429: int = 0
    status_503: int = 0
    throttled_events: int = 0
    resent: int = 0
    other_statuses: dict[str, int] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int) -> None:
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)


class Api:
    def __init__(self, url: str, key: str, timeout: float = 30):
        self.url, self.key, self.timeout = url, key, timeout

    def post(self, body: bytes) -> tuple[int, object, float | None]:
        """(status, parsed JSON answer or text, Retry-After seconds)."""
        headers = {"Content-Type": "application/x-ndjson", "x-api-key": self.key}
        request = urllib.request.Request(self.url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw, retry = response.status, response.read(), response.headers.get("Retry-After")
        except urllib.error.HTTPError as e:
            status, raw, retry = e.code, e.read(), e.headers.get("Retry-After")
        except (OSError, TimeoutError) as e:  # no answer: the write may or may not have happened
            return 0, str(e), None
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = raw.decode(errors="replace")
        try:
            retry_after = float(retry) if retry is not None else None
        except ValueError:
            retry_after = None
        return status, answer, retry_after


def deliver(api: Api, events: list[dict], counts: Counts, accepted: set[int], max_attempts: int,
            stop_by: float) -> None:
    """Sends ``events`` until every one is answered as written, resending as the README says;
    gives up (``refused``) after ``max_attempts`` or at ``stop_by``."""
    pending = events
    for attempt in range(max_attempts):
        if attempt:
            counts.add(resent=len(pending))
        status, answer, retry_after = api.post(ndjson(pending))
        counts.add(requests=1)
        if status == 202:
            with counts.lock:
                accepted.update(e["n"] for e in pending)
                counts.accepted += len(pending)
            return
        if status == 503 and isinstance(answer, dict) and "failedEvents" in answer:
            failed = [int(str(p).removeprefix("line ")) for p in answer["failedEvents"]]
            failed_set = set(failed)
            written = [e for i, e in enumerate(pending, start=1) if i not in failed_set]
            with counts.lock:
                accepted.update(e["n"] for e in written)
                counts.accepted += len(written)
                counts.status_503 += 1
                counts.throttled_events += len(failed)
            pending = [pending[i - 1] for i in failed]
            pause = retry_after if retry_after is not None else 1.0
        elif status == 429:
            counts.add(status_429=1, throttled_events=len(pending))
            pause = retry_after if retry_after is not None else 0.5 * 2 ** min(attempt, 4)
        elif status == 0 or status >= 500:
            # No answer, or a 5xx without the list of unwritten events: resend them all (the
            # archive counts what lands twice as duplicated).
            with counts.lock:
                counts.other_statuses[str(status)] = counts.other_statuses.get(str(status), 0) + 1
            pause = 0.5 * 2 ** min(attempt, 4)
        else:  # a 4xx other than 429 is final: the events are refused, nothing was written
            with counts.lock:
                counts.other_statuses[str(status)] = counts.other_statuses.get(str(status), 0) + 1
                counts.refused += len(pending)
                if len(counts.refusals) < 5:
                    counts.refusals.append(f"{status}: {str(answer)[:200]}")
            return
        if not pending:
            return
        if time.monotonic() + pause > stop_by:
            break
        time.sleep(pause)
    counts.add(refused=len(pending))
    with counts.lock:
        if len(counts.refusals) < 5:
            counts.refusals.append(f"gave up on {len(pending)} events after {max_attempts} attempts")


def send(api: Api, run: str, rate: float, seconds: float, per_request: int, clients: int, keys: str,
         max_attempts: int, progress, seed: int = 1) -> tuple[Counts, set[int], dict]:
    """Sends the workload at ``rate`` events/s for ``seconds``; returns what the client saw."""
    counts = Counts()
    accepted: set[int] = set()
    rng = random.Random(seed)
    work: queue.Queue = queue.Queue(maxsize=clients * 2)
    start = time.monotonic()
    # Deliveries still resending may go on after the last send, but not for ever.
    stop_by = start + seconds + 120

    def worker():
        while (batch := work.get()) is not None:
            deliver(api, batch, counts, accepted, max_attempts, stop_by)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    total = int(rate * seconds)
    n = 0
    next_report = start + 1
    behind_max = 0.0
    while n < total:
        due = start + n / rate
        now = time.monotonic()
        if now >= next_report:
            progress(now - start, seconds, counts, work.qsize())
            next_report += 1
        if now < due:
            time.sleep(min(due, next_report) - now)
            continue
        behind_max = max(behind_max, now - due)
        size = min(per_request, total - n)
        batch = [player_event(run, n + i, rng, keys) for i in range(size)]
        work.put(batch)  # blocks when every client is busy: the achieved rate then drops
        counts.add(sent=size)
        n += size
    sent_seconds = time.monotonic() - start
    for _ in threads:
        work.put(None)
    while any(t.is_alive() for t in threads):
        progress(time.monotonic() - start, seconds, counts, work.qsize())
        for t in threads:
            t.join(timeout=1)
    progress(time.monotonic() - start, seconds, counts, 0, final=True)
    timing = {"send_seconds": round(sent_seconds, 2), "achieved_rate": round(total / sent_seconds, 1) if sent_seconds else 0,
              "deliveries_done_seconds": round(time.monotonic() - start, 2), "max_seconds_behind": round(behind_max, 2)}
    return counts, accepted, timing


# --- the archive ---


class Archive:
    """The archive bucket read back: each object is fetched once per (key, ETag), and only
    objects written since the run started are read."""

    def __init__(self, s3, bucket: str, prefix: str, since: datetime):
        self.s3, self.bucket, self.prefix, self.since = s3, bucket, prefix, since
        # key -> (ETag, [(n, received_at)], LastModified, bzip2 bytes, raw bytes, bytes of the run's lines)
        self.objects: dict[str, tuple[str, list[tuple[int, int | None]], datetime, int, int, int]] = {}

    def refresh(self, run: str) -> None:
        needle = run.encode()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                key, etag, modified = item["Key"], item["ETag"], item["LastModified"]
                if modified < self.since or (key in self.objects and self.objects[key][0] == etag):
                    continue
                body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                raw = bz2.decompress(body)
                events, run_bytes = [], 0
                for line in raw.split(b"\n"):
                    if needle in line:
                        event = json.loads(line)
                        if event.get("load_run") == run:
                            events.append((event["n"], event.get("received_at")))
                            run_bytes += len(line) + 1
                self.objects[key] = (etag, events, modified, len(body), len(raw), run_bytes)

    def sizes(self) -> tuple[float, float]:
        """(bytes of one archived record of the run, bzip2 bytes / raw bytes of its objects)."""
        held = [o for o in self.objects.values() if o[1]]
        lines = sum(len(o[1]) for o in held)
        raw = sum(o[4] for o in held)
        return (sum(o[5] for o in held) / lines if lines else 0.0,
                sum(o[3] for o in held) / raw if raw else 0.0)

    def events_per_shard(self) -> dict[str, int]:
        """Archive lines of the run per shard, from the object keys (`…<shardId>-<seq>.bz2`)."""
        shards: dict[str, int] = {}
        for key, (_, events, *_) in self.objects.items():
            if events:
                shard = m.group(0) if (m := SHARD_IN_KEY.search(key)) else "?"
                shards[shard] = shards.get(shard, 0) + len(events)
        return dict(sorted(shards.items()))

    def counts(self) -> tuple[dict[int, int], list[float], int, int]:
        """(archive lines per event number, seconds from receive stamp to object, objects, bytes)."""
        seen: dict[int, int] = {}
        latencies = []
        objects = size = 0
        for _, events, modified, length, _, _ in self.objects.values():
            if events:
                objects += 1
                size += length
            for n, received in events:
                seen[n] = seen.get(n, 0) + 1
                if received is not None:
                    latencies.append(modified.timestamp() - received / 1000)
        return seen, latencies, objects, size


def settle(archive: Archive, run: str, accepted: set[int], settle_seconds: float, cap_seconds: float,
           progress) -> float:
    """Reads the archive until it holds every accepted event, or nothing new came for
    ``settle_seconds``, or ``cap_seconds`` passed; returns the seconds it took."""
    start = time.monotonic()
    last_change, last_found = start, -1
    while True:
        archive.refresh(run)
        found = len(archive.counts()[0])
        now = time.monotonic()
        if found != last_found:
            last_found, last_change = found, now
        progress(found, len(accepted), now - start)
        if accepted <= set(archive.counts()[0]):
            return now - start
        if now - last_change > settle_seconds or now - start > cap_seconds:
            return now - start
        time.sleep(2)


# --- wiring ---


def stack_outputs(args) -> dict[str, str]:
    if args.outputs:
        return json.loads(Path(args.outputs).read_text())
    cfn = boto3.client("cloudformation", **client_options(args.endpoint_url))
    try:
        stack = cfn.describe_stacks(StackName=args.stack)["Stacks"][0]
    except cfn.exceptions.ClientError as e:
        raise UsageError(f"stack {args.stack!r}: {e}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def client_options(endpoint_url: str) -> dict:
    return {
        "endpoint_url": endpoint_url,
        "region_name": REGION,
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
        "config": Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5}),
    }


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def run(args, out=print, err=sys.stderr, outputs: dict[str, str] | None = None) -> dict:
    """Sends, reads back, prints and returns the summary; ``outputs`` (the stack's) default to
    ``--outputs`` or ``--stack``."""
    require_loopback(args.endpoint_url)
    outputs = outputs or stack_outputs(args)
    missing = [k for k in ("IngestApiId", "IngestApiStageName", "IngestApiKeyId", "ArchiveBucketName", "ArchiveLocation")
               if k not in outputs]
    if missing:
        raise UsageError(f"the stack's outputs lack {', '.join(missing)}: is it the sluice pipeline?")
    options = client_options(args.endpoint_url)
    key = boto3.client("apigateway", **options).get_api_key(apiKey=outputs["IngestApiKeyId"], includeValue=True)["value"]
    url = f"{args.endpoint_url}/_aws/execute-api/{outputs['IngestApiId']}/{outputs['IngestApiStageName']}/events"
    api = Api(url, key)
    run_id = f"load-{uuid.uuid4().hex[:10]}"
    started_at = datetime.now(timezone.utc).replace(microsecond=0)
    tty = err.isatty()

    def send_progress(elapsed, seconds, counts, queued, final=False):
        clock = f"{elapsed:5.0f}/{seconds:.0f} s" if elapsed <= seconds else f"{elapsed:5.0f} s, resends finishing"
        line = (f"[{clock}] sent {counts.sent:,} ({counts.sent / max(min(elapsed, seconds), 1e-9):,.0f}/s) "
                f"accepted {counts.accepted:,} throttled {counts.throttled_events:,} resent {counts.resent:,} "
                f"refused {counts.refused:,} waiting {queued}")
        if tty:
            err.write("\r" + line + ("\n" if final else ""))
        elif final or int(elapsed) % 5 == 0:
            err.write(line + "\n")
        err.flush()

    out(f"run {run_id}: {args.rate:g} events/s for {args.seconds:g} s, {args.per_request} per request, "
        f"{args.clients} clients, keys {args.keys} -> {url}")
    counts, accepted, timing = send(api, run_id, args.rate, args.seconds, args.per_request, args.clients, args.keys,
                                    args.max_attempts, send_progress, seed=args.seed)

    bucket = outputs["ArchiveBucketName"]
    prefix = outputs["ArchiveLocation"].removeprefix(f"s3://{bucket}/")
    archive = Archive(boto3.client("s3", **options), bucket, prefix, since=started_at.replace(second=0))

    def settle_progress(found, wanted, elapsed):
        line = f"archive: {found:,} of {wanted:,} accepted events after {elapsed:.0f} s"
        err.write(("\r" + line) if tty else (line + "\n") if int(elapsed) % 10 < 2 else "")
        err.flush()

    catch_up = settle(archive, run_id, accepted, args.settle, args.settle_cap, settle_progress)
    if tty:
        err.write("\n")
    seen, latencies, objects, size = archive.counts()
    archived = set(seen)
    summary = {
        "run": run_id,
        "rate": args.rate,
        "seconds": args.seconds,
        "per_request": args.per_request,
        "clients": args.clients,
        "keys": args.keys,
        "sent": counts.sent,
        "requests": counts.requests,
        "accepted": counts.accepted,
        "refused": counts.refused,
        "throttled": {"status_429": counts.status_429, "status_503": counts.status_503, "events": counts.throttled_events},
        "resent": counts.resent,
        "other_statuses": counts.other_statuses,
        "refusals": counts.refusals,
        "archived": len(archived),
        "lost": len(accepted - archived),
        "duplicated": sum(seen.values()) - len(archived),
        "unacknowledged": len(archived - accepted),
        "archive_objects": objects,
        "events_per_shard": archive.events_per_shard(),
        "record_bytes": round(archive.sizes()[0], 1),
        "bzip2_ratio": round(archive.sizes()[1], 4),
        "archive_bytes": size,
        "archive_catch_up_seconds": round(catch_up, 1),
        "received_to_archived_seconds": {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
                                         "max": percentile(latencies, 1.0)},
        **timing,
    }
    summary["ok"] = summary["lost"] == 0 and summary["duplicated"] == 0 and summary["refused"] == 0
    # Sustained: the client kept (nearly) the asked rate, so the pipeline took it as it came.
    summary["sustained"] = summary["ok"] and summary["achieved_rate"] >= 0.95 * args.rate
    out(render(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def render(s: dict) -> str:
    rows = [
        ("sent", f"{s['sent']:,} events in {s['requests']:,} requests; achieved {s['achieved_rate']:,} events/s "
                 f"(asked {s['rate']:g}), at most {s['max_seconds_behind']} s behind schedule"),
        ("accepted", f"{s['accepted']:,}"),
        ("throttled", f"{s['throttled']['events']:,} events ({s['throttled']['status_429']} x 429, "
                      f"{s['throttled']['status_503']} x 503); resent {s['resent']:,}"),
        ("refused", f"{s['refused']:,}" + (f" ({'; '.join(s['refusals'])})" if s["refusals"] else "")),
        ("other answers", json.dumps(s["other_statuses"]) if s["other_statuses"] else "none"),
        ("archived", f"{s['archived']:,} in {s['archive_objects']} objects ({s['archive_bytes']:,} bytes bzip2), "
                     f"caught up {s['archive_catch_up_seconds']} s after the sends ended; "
                     f"{s['record_bytes']} bytes per record, bzip2 ratio {s['bzip2_ratio']}"),
        ("per shard", ", ".join(f"{k} {v:,}" for k, v in s["events_per_shard"].items()) or "none"),
        ("received -> archived", ", ".join(f"{k} {v} s" for k, v in s["received_to_archived_seconds"].items())),
        ("lost", f"{s['lost']:,} (accepted, not in the archive when it had been still for --settle s)"),
        ("duplicated", f"{s['duplicated']:,}"),
        ("unacknowledged", f"{s['unacknowledged']:,} (archived, but the client never got its answer)"),
    ]
    width = max(len(name) for name, _ in rows)
    verdict = "OK: nothing lost, duplicated or refused" if s["ok"] else "NOT OK"
    if s["ok"]:
        verdict += (f"; sustained {s['rate']:g} events/s" if s["sustained"]
                    else f"; the rate was not sustained ({s['achieved_rate']:,} of {s['rate']:g} events/s)")
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows) + f"\n{verdict}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, required=True, help="events per second to send")
    p.add_argument("--seconds", type=float, required=True, help="how long to send")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--outputs", help="the stack's outputs as JSON (infra/deploy.py --json)")
    target.add_argument("--stack", default="sluice", help="stack name, outputs read from CloudFormation (default sluice)")
    p.add_argument("--endpoint-url", default=localstack_endpoint(), help="LocalStack (loopback only; default %(default)s)")
    p.add_argument("--per-request", type=int, default=100, help="events per POST (default %(default)s)")
    p.add_argument("--clients", type=int, default=8, help="requests in flight at most (default %(default)s)")
    p.add_argument("--keys", choices=("spread", "hot"), default="spread",
                   help=f"partition keys: {PLAYERS:,} players, or one hot player (default %(default)s)")
    p.add_argument("--max-attempts", type=int, default=20, help="sends of one event before the client gives up")
    p.add_argument("--settle", type=float, default=60, help="stop reading the archive after this long without news")
    p.add_argument("--settle-cap", type=float, default=900, help="stop reading the archive after this long at most")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated events")
    p.add_argument("--json", help="write the summary here as JSON")
    args = p.parse_args(argv)
    for name in ("rate", "seconds", "per_request", "clients", "max_attempts"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.rate * args.seconds > 10_000_000:
        p.error("at most 10,000,000 events per run")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = run(args)
    except UsageError as e:
        print(f"load: {e}", file=sys.stderr)
        return 2
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
