#!/usr/bin/env python3
"""Writes the committed seed corpora, fuzz/corpus/<target>/, from the sample events in
events/ and the parsers' unit-test data. Deterministic: re-running it rewrites the same
files. Standard library only.

    python3 fuzz/seed_corpus.py

The fuzzers only read these directories (`just fuzz` keeps what it discovers in
$SLUICE_CACHE/fuzz-corpus/<target>/), so they stay small and reviewable.
"""

import base64
import gzip
import json
import pathlib
import re
import shutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
CORPUS = ROOT / "fuzz" / "corpus"


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def event(path):
    return json.loads((EVENTS / path).read_text())


# --- snappy ----------------------------------------------------------------------------

STREAM_IDENTIFIER = b"\xff\x06\x00\x00sNaPpY"


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def literal_block(data):
    """A valid raw snappy block of literals only (what any decoder must accept)."""
    out = bytearray(varint(len(data)))
    for start in range(0, len(data), 60):
        chunk = data[start : start + 60]
        out.append((len(chunk) - 1) << 2)
        out += chunk
    return bytes(out)


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked_crc(data):
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def framed_chunk(kind, payload, plain):
    """A framing-format chunk: 0x00 compressed or 0x01 uncompressed, CRC of `plain`."""
    body = masked_crc(plain).to_bytes(4, "little") + payload
    return bytes([kind]) + len(body).to_bytes(3, "little") + body


def snappy_seeds():
    lines = b"".join(
        compact({"PTS": 1715680800000 + i, "event_id": f"e-{i}", "event_type": "play"}) + b"\n"
        for i in range(3)
    )
    return {
        "raw-ndjson": literal_block(lines),
        "raw-empty": varint(0),
        # From the unit tests: python-snappy 0.7 `snappy.compress` / `stream_compress`.
        "raw-python-snappy": b"\x17\x14hello B\x06\x00",
        "framed-python-snappy": STREAM_IDENTIFIER
        + b"\x00\x11\x00\x00\x07\xe3\xe0\xda\x18\x1c{\"a\":1}\n>\x08\x00",
        "framed-uncompressed-chunk": STREAM_IDENTIFIER + framed_chunk(1, lines, lines),
        "framed-compressed-chunk": STREAM_IDENTIFIER + framed_chunk(0, literal_block(lines), lines),
        "framed-identifier-only": STREAM_IDENTIFIER,
        "framed-truncated-identifier": STREAM_IDENTIFIER[:6],
        # Hostile headers: 4 GiB - 1 and 100 MB claimed by a few bytes.
        "raw-claims-4gib": b"\xff\xff\xff\xff\x0f\x00\x41",
        "raw-claims-100mb": varint(100_000_000) + b"\x00\x41",
        "not-snappy-text": b"this is plain text, not snappy at all",
        "not-snappy-garbage": b"\xff\xff\xff\xff\xff\xff\x01\x02",
    }


# --- S3 envelopes and keys -------------------------------------------------------------


def s3_seeds():
    seeds = {}
    for path in [
        "avro-converter/s3-put.json",
        "avro-converter/s3-multipart-upload.json",
        "avro-converter/s3-test-event.json",
        "counter-mapper/sns-s3-put.json",
        "counter-mapper/sns-s3-test-event.json",
        "crash-router/sqs-accepted.json",
        "crash-router/sqs-unreadable.json",
        "job-poller/s3-put-report.json",
    ]:
        seeds["event-" + path.replace("/", "-").removesuffix(".json")] = compact(event(path))
    put = event("avro-converter/s3-put.json")
    seeds["sqs-body-s3-put"] = compact(put)
    record = put["Records"][0]
    seeds["eventbridge-object-created"] = compact(
        {
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "time": "2024-05-14T10:00:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:s3:::" + record["s3"]["bucket"]["name"]],
            "detail": {
                "version": "0",
                "bucket": {"name": record["s3"]["bucket"]["name"]},
                "object": {"key": "incoming/a b+c.json.snappy", "size": 5, "etag": "x",
                           "sequencer": "0055AED6DCD90281E5"},
                "reason": "PutObject",
            },
        }
    )
    # Keys from the decoder's unit tests, and a sequencer pair.
    for i, key in enumerate(
        ["my+file.json", "c%2B%2B+notes.txt", "caf%C3%A9", "%2541",
         "raw/dt%3D2024-05-14/part%3A1.json", "bad%C3%28name", "a%2", "ab%zz",
         "0055AED6DCD9028\n0055AED6DCD90281E5"]
    ):
        seeds[f"key-{i}"] = key.encode()
    return seeds


# --- crash keys --------------------------------------------------------------------------


def crash_seeds():
    seeds = {}
    keys = []
    for path in ["crash-router/sqs-accepted.json", "crash-router/sqs-mixed-batch.json"]:
        keys += re.findall(r'"key": ?"([^"]+)"', json.dumps(event(path)).replace('\\"', '"'))
    for i, key in enumerate(dict.fromkeys(keys)):
        seeds[f"event-key-{i}"] = key.encode()
    accepted = "00007bd0-2d1c-4865-af09-80bc00180313"
    for i, text in enumerate(
        [accepted, "00007bd0-2d1c-4865-af09-80bc01180313",
         "00007bd0-2d1c-4865-af09-80bc00200229", "00007BD0-2d1c-4865-af09-80bc00180313",
         "00007bd0-2d1c-4865-af09-80bc0018031\u00e9", "v2/raw_crash/000/20180314/" + accepted,
         "custom/prefix/\ncustom/prefix/abc/20180313/" + accepted]
    ):
        seeds[f"id-{i}"] = text.encode()
    return seeds


# --- counter files -----------------------------------------------------------------------


def counter_seeds():
    return {
        "file-seed-shape": b"COUNTER1 123456\nCOUNTER2 54321\n",
        "file-whitespace": b"\xef\xbb\xbf  A\t-5\r\nB    +7  \r\n\n\t\r\nC 0",
        "file-problems": b"A\nB 1 2\nC x\nD 99999999999999999999\nA 3\nA 4\n\xff\xfe 1\n",
        "key": b"counters/2024-05-14/values_i-0abc123def4567890",
        "key-with-prefix": b"counters/\ncounters/2024-02-30/values_i-1",
        "sequencers": b"0055AED6DCD9028\n0055aed6dcd90281e5",
    }


# --- JSON -> Avro ------------------------------------------------------------------------


def avro_seeds():
    player = {
        "PTS": 1715680800123, "event_id": "6f1c9a1e-0001", "event_type": "bitrate_change",
        "session_id": "s-1", "content_id": "c-9", "user_id": None, "bitrate_kbps": 5000,
        "volume": 0.5, "muted": False, "player": {"name": "shaka", "version": "4.7.11"},
        "device": {"platform": "web", "os_version": None},
        "experiments": ["a", "b"], "custom": {"k": "v"}, "extra": [1, 2],
    }
    every = {
        "b": True, "i": -2147483648, "l": 3.0, "f": 1.5, "d": 1e300, "s": "s", "n": None,
        "by": "\u00ff\u0000", "fx": "abcd", "e": "b", "arr": [1, 2], "m": {"x": None, "y": "z"},
        "u": "abcd", "wide": 1099511627776, "date": 19844, "tm": 1, "tu": 2, "tsm": 3,
        "tsu": 4, "tsn": 5, "ltm": 6, "ltu": 7, "ltn": 8,
        "id": "6f1c9a1e-8b1d-4f5e-9a7c-00000000002a", "money": None,
        "next": {"b": False, "i": 1, "f": 0, "d": 0, "fx": "wxyz", "e": "a"},
    }
    return {
        "player": b"\x00" + compact(player),
        "player-bad-bitrate": b"\x00" + compact({**player, "bitrate_kbps": "high"}),
        "player-missing-pts": b"\x00" + compact({k: v for k, v in player.items() if k != "PTS"}),
        "every": b"\x01" + compact(every),
        "every-out-of-range": b"\x01" + compact({**every, "i": 2147483648, "f": 1e39}),
    }


# --- ingest bodies -----------------------------------------------------------------------

JSON, NDJSON, GZIP = 0, 1, 2


def ingest_seeds():
    seeds = {}
    for path in ["post-ndjson", "post-malformed-ndjson", "post-not-an-object",
                 "post-single-object-text", "post-json-array-gzip"]:
        e = event(f"ingest-api/{path}.json")
        body = e["body"]
        raw = base64.b64decode(body) if e.get("isBase64Encoded") else body.encode()
        content_type = (e.get("headers") or {}).get("Content-Type", "")
        encoding = (e.get("headers") or {}).get("Content-Encoding", "")
        flags = (NDJSON if "ndjson" in content_type else JSON) | (GZIP if encoding == "gzip" else 0)
        seeds[path] = bytes([flags]) + raw
    seeds["array-nested"] = bytes([JSON]) + b' [ {"a":[1,{"b":"]"}]} , {"c":"\\"}"}\n]'
    seeds["ndjson-blank-lines"] = bytes([NDJSON]) + b'\xef\xbb\xbf{"a":1}\r\n\n  \n {"player_id":7}\n'
    seeds["gzip-two-members"] = bytes([GZIP | NDJSON]) + (
        gzip.compress(b'{"a":1}\n', mtime=0) + gzip.compress(b'{"b":2}\n', mtime=0)
    )
    return seeds


# --- bzip2_encode ------------------------------------------------------------------------
# First byte: level 1 + b % 9; top bit: repeat the rest to 99-230 kB at level 1 or 2
# (bit 6: xor each copy with its index).


def bzip2_seeds():
    line = compact({"player_id": 7, "event": "score", "points": 120, "ts": 1700000000000})
    return {
        "level9-json-lines": b"\x08" + (line + b"\n") * 3,
        "level1-runs": b"\x00" + b"a" * 3 + b"b" * 4 + b"c" * 5 + b"d" * 300 + b"e",
        "repeat-one-byte": b"\x80" + b"z",
        "repeat-pattern-xored": b"\xc1" + b"abcab",
        "repeat-json-line": b"\x81" + line + b"\n",
    }


def main():
    targets = {
        "snappy": snappy_seeds(),
        "s3_envelope": s3_seeds(),
        "crash_key": crash_seeds(),
        "counter_file": counter_seeds(),
        "avro_coerce": avro_seeds(),
        "ingest_body": ingest_seeds(),
        "bzip2_encode": bzip2_seeds(),
    }
    for target, seeds in targets.items():
        directory = CORPUS / target
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for name, data in seeds.items():
            (directory / name).write_bytes(data)
        total = sum(len(d) for d in seeds.values())
        print(f"{target}: {len(seeds)} seeds, {total} bytes")


if __name__ == "__main__":
    main()
