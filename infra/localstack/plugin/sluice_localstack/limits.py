"""The documented AWS Lambda limits the local environment applies, and the
settings that switch each one off for debugging.

https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html

Every limit is on by default. ``SLUICE_LAMBDA_LIMITS=0`` turns all of them
off; ``SLUICE_LAMBDA_LIMITS_OFF=memory,tmp`` turns off the ones named
(``payload``, ``memory``, ``tmp``, ``recursion``, ``concurrency``,
``apigateway``). The
settings are read from LocalStack's environment (``just up`` passes them on).
"""

import hashlib
import os

# Invoke request payload, synchronous (RequestResponse) and asynchronous (Event).
# AWS raised the asynchronous limit from 256 KB to 1 MB in October 2025.
MAX_SYNC_REQUEST_BYTES = 6 * 1024 * 1024
MAX_ASYNC_REQUEST_BYTES = 1024 * 1024
# Response payload of a synchronous invocation; the number AWS's error names.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100
# Lambda stops the 17th invocation of one chain of requests through the same function.
MAX_RECURSIVE_INVOCATIONS = 16

# API Gateway REST APIs: request body, and the integration timeout when the
# integration sets no TimeoutInMillis of its own.
MAX_API_REQUEST_BYTES = 10 * 1024 * 1024
DEFAULT_API_INTEGRATION_TIMEOUT_MS = 29_000

LIMITS = ("payload", "memory", "tmp", "recursion", "concurrency", "apigateway")


def enabled(limit: str, environ: dict[str, str] | None = None) -> bool:
    """Whether ``limit`` (one of ``LIMITS``) is applied."""
    if limit not in LIMITS:
        raise ValueError(f"unknown Lambda limit {limit!r} (known: {', '.join(LIMITS)})")
    env = os.environ if environ is None else environ
    if (env.get("SLUICE_LAMBDA_LIMITS") or "1").strip().lower() in ("0", "false", "off", "no"):
        return False
    off = {name.strip().lower() for name in (env.get("SLUICE_LAMBDA_LIMITS_OFF") or "").split(",")}
    return limit not in off


def request_too_large(payload_size: int, asynchronous: bool) -> str | None:
    """The RequestEntityTooLargeException message for a payload over the limit, else None."""
    limit = MAX_ASYNC_REQUEST_BYTES if asynchronous else MAX_SYNC_REQUEST_BYTES
    if payload_size <= limit:
        return None
    return f"Request must be smaller than {limit} bytes for the InvokeFunction operation"


def response_too_large(response_size: int) -> str | None:
    """The Function.ResponseSizeTooLarge message for a response over the limit, else None."""
    if response_size <= MAX_RESPONSE_BYTES:
        return None
    return f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."


# --- recursion: the Lineage field of the X-Ray trace header ------------------
#
# Lambda counts, per function, how often one chain of requests has reached it,
# in the ``Lineage`` field of the ``X-Amzn-Trace-Id`` header it hands to the
# function (``_X_AMZN_TRACE_ID``); the AWS SDKs send that header on every call
# the function makes, so the count travels with the chain. Format:
# ``Lineage=<8 hex of the function>:<count>|<8 hex>:<count>…``.


def function_tag(unqualified_arn: str) -> str:
    return hashlib.sha256(unqualified_arn.encode()).hexdigest()[:8]


def parse_lineage(lineage: str | None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in (lineage or "").split("|"):
        tag, _, count = entry.strip().rpartition(":")
        if tag and count.isdigit():
            counts[tag] = max(counts.get(tag, 0), int(count))
    return counts


def format_lineage(counts: dict[str, int]) -> str:
    return "|".join(f"{tag}:{count}" for tag, count in counts.items())


def next_lineage(lineage: str | None, unqualified_arn: str) -> tuple[str, int]:
    """(the lineage after one more invocation of this function, its count for the function)."""
    counts = parse_lineage(lineage)
    tag = function_tag(unqualified_arn)
    counts[tag] = counts.get(tag, 0) + 1
    return format_lineage(counts), counts[tag]
