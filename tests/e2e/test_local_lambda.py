"""The local Lambda environment end to end: the lambda-probe release zip,
deployed by CloudFormation (tests/e2e/probe.yaml) to LocalStack, runs under
the sluice-host executor behind every trigger sluice uses, and LocalStack
handles each outcome as it does with its Docker executor."""

import base64
import json
import threading
import time
import urllib.error
import urllib.request

import botocore.exceptions
import pytest

from conftest import ACCOUNT, ENDPOINT, REGION, invoke, log_lines, marker, wait_until


@pytest.fixture(scope="module")
def probe(deploy):
    return deploy("tests/e2e/probe.yaml")


def record_lines(function_name: str, tag: str) -> list[dict]:
    """The probe's PROBE-RECORD lines whose content contains ``tag``, parsed."""
    parsed = []
    for line in log_lines(function_name, contains=tag):
        if not line.startswith("PROBE-RECORD "):
            continue
        fields = dict(part.split("=", 1) for part in line.split(" content=")[0].split()[1:])
        fields["content"] = line.split(" content=", 1)[1]
        parsed.append(fields)
    return parsed


def deliveries_by_content(records: list[dict]) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for record in records:
        found.setdefault(record["content"], []).append((record["delivery"], record["outcome"]))
    return found


# --- direct invocations ---


def test_sync_invoke_returns_handler_payload_with_invocation_context(probe, aws):
    name = probe["ProbeFunctionName"]
    tag = marker()
    before_ms = time.time() * 1000

    response, payload = invoke(name, {"echo": tag}, Qualifier="$LATEST")

    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert payload["echo"] == {"echo": tag}
    function_arn = aws("lambda").get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    assert payload["invoked_function_arn"] == f"{function_arn}:$LATEST"
    assert payload["request_id"] == response["ResponseMetadata"]["RequestId"]
    assert before_ms < payload["deadline_ms"] <= time.time() * 1000 + 10_000
    assert payload["xray_trace_id"].startswith("Root=1-")
    env = payload["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_REGION"] == REGION
    assert env["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{ENDPOINT.rsplit(':', 1)[1]}"
    assert env["PROBE_SETTING"] == "from-template"
    assert env["LAMBDA_TASK_ROOT"] == payload["cwd"]
    assert not {"LOCALSTACK_RUNTIME_ENDPOINT", "LOCALSTACK_RUNTIME_ID"} & set(payload["localstack_vars"])


def test_handler_error_comes_back_as_function_error_with_type_and_message(probe):
    tag = marker()

    response, payload = invoke(probe["ProbeFunctionName"], {"fail": f"boom {tag}"})

    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert payload == {"errorType": "ProbeFailure", "errorMessage": f"boom {tag}"}


def test_log_lines_are_readable_through_cloudwatch_logs(probe):
    name = probe["ProbeFunctionName"]
    tag = marker()

    response, _ = invoke(name, {"log": tag}, LogType="Tail")

    tail = base64.b64decode(response["LogResult"]).decode()
    assert f"PROBE-LOG stdout {tag}" in tail and f"PROBE-LOG stderr {tag}" in tail
    request_id = response["ResponseMetadata"]["RequestId"]
    lines = wait_until(
        lambda: [line for line in log_lines(name) if tag in line or request_id in line]
        if any(line.startswith(f"REPORT RequestId: {request_id}") for line in log_lines(name))
        else None,
        timeout=30,
        message="invocation logs in CloudWatch",
    )
    assert f"START RequestId: {request_id} Version: $LATEST" in lines
    assert f"PROBE-LOG stdout {tag}" in lines
    assert f"PROBE-LOG stderr {tag}" in lines
    assert f"END RequestId: {request_id}" in lines
    report = next(line for line in lines if line.startswith("REPORT"))
    assert "Duration: " in report and "Memory Size: 128 MB" in report


def test_timeout_is_reported_and_the_next_invoke_starts_fresh(probe):
    name = probe["TimeoutProbeFunctionName"]
    _, warm = invoke(name, {"warm": True})

    started = time.monotonic()
    response, payload = invoke(name, {"sleep_ms": 6000})
    elapsed = time.monotonic() - started

    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 2.00 seconds" in payload["errorMessage"]
    assert 2 <= elapsed < 5
    response, after = invoke(name, {"after": "timeout"})
    assert "FunctionError" not in response
    assert after["echo"] == {"after": "timeout"}
    assert after["pid"] != warm["pid"], "the timed-out process must be replaced"
    wait_until(lambda: log_lines(name, contains="Task timed out after 2.00 seconds"), timeout=30)


def test_crash_is_reported_as_exit_error_and_the_next_invoke_works(probe):
    name = probe["ProbeFunctionName"]

    response, payload = invoke(name, {"exit": 3})

    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ExitError"
    assert payload["errorMessage"].endswith("Runtime exited with error: exit status 3")
    response, after = invoke(name, {"after": "crash"})
    assert "FunctionError" not in response and after["echo"] == {"after": "crash"}


def test_failing_cold_start_is_reported_and_logged(probe, aws):
    name = probe["InitFailProbeFunctionName"]

    response, payload = invoke(name, {"any": 1})

    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ExitError"
    assert "Runtime exited with error: exit status 1" in payload["errorMessage"]
    wait_until(lambda: log_lines(name, contains="PROBE-INIT failing cold start on purpose"), timeout=30)
    wait_until(lambda: log_lines(name, contains="Status: error\tError Type: Runtime.ExitError"), timeout=30)

    # a runtime that reports its init error through the Runtime API gets that error back to the caller
    lambda_ = aws("lambda")
    lambda_.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"PROBE_INIT": "report"}}
    )
    wait_until(
        lambda: lambda_.get_function(FunctionName=name)["Configuration"]["LastUpdateStatus"] == "Successful",
        timeout=30,
    )
    response, payload = invoke(name, {"any": 2})
    assert response["FunctionError"] == "Unhandled"
    assert payload == {
        "errorType": "ProbeInitFailure",
        "errorMessage": "cold start refused: PROBE_INIT=report",
    }


def test_concurrent_invocations_run_in_separate_processes(probe):
    name = probe["ProbeFunctionName"]
    results = []

    def call():
        results.append(invoke(name, {"sleep_ms": 1500})[1])

    threads = [threading.Thread(target=call) for _ in range(3)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len({result["pid"] for result in results}) == 3
    assert time.monotonic() - started < 1.5 * 3


# --- asynchronous invocations and destinations ---


def receive_one(sqs, queue_url: str, predicate) -> dict | None:
    for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
        "Messages", []
    ):
        body = json.loads(message["Body"])
        if predicate(body):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            return body
    return None


def test_async_invoke_runs_and_reaches_the_on_success_destination(probe, aws):
    name = probe["AsyncProbeFunctionName"]
    tag = marker()

    response = aws("lambda").invoke(
        FunctionName=name, InvocationType="Event", Payload=json.dumps({"log": tag})
    )

    assert response["StatusCode"] == 202
    record = wait_until(
        lambda: receive_one(
            aws("sqs"), probe["AsyncSuccessQueueUrl"], lambda b: b["requestPayload"] == {"log": tag}
        ),
        timeout=60,
        message="on-success destination record",
    )
    assert record["requestContext"]["condition"] == "Success"
    assert record["responsePayload"]["echo"] == {"log": tag}
    wait_until(lambda: log_lines(name, contains=f"PROBE-LOG stdout {tag}"), timeout=30)


def test_failing_async_invoke_is_retried_then_lands_in_the_on_failure_destination(probe, aws):
    name = probe["AsyncProbeFunctionName"]
    tag = marker()

    aws("lambda").invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"fail": tag}))

    record = wait_until(
        lambda: receive_one(
            aws("sqs"), probe["AsyncFailureQueueUrl"], lambda b: b["requestPayload"] == {"fail": tag}
        ),
        timeout=90,
        message="on-failure destination record",
    )
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"] == {"errorType": "ProbeFailure", "errorMessage": tag}
    attempts = wait_until(lambda: len(log_lines(name, contains=f"PROBE-FAIL {tag}")) == 2 and 2, timeout=30)
    assert attempts == 2  # the first attempt and one retry (MaximumRetryAttempts: 1)


# --- notifications ---


def test_s3_object_created_notification_reaches_the_function(probe, aws):
    key = f"incoming/{marker()}.txt"

    aws("s3").put_object(Bucket=probe["BucketName"], Key=key, Body=b"hello")

    lines = wait_until(lambda: log_lines(probe["ProbeFunctionName"], contains=f"key={key}"), timeout=60)
    assert lines[0].startswith("PROBE-S3 event=ObjectCreated:Put")
    assert f"bucket={probe['BucketName']}" in lines[0]


def test_sns_subscription_reaches_the_function(probe, aws):
    tag = marker()

    aws("sns").publish(TopicArn=probe["TopicArn"], Message=f"hello {tag}")

    lines = wait_until(
        lambda: log_lines(probe["ProbeFunctionName"], contains=f"message=hello {tag}"), timeout=60
    )
    assert f"topic={probe['TopicArn']}" in lines[0]


# --- event source mappings with ReportBatchItemFailures ---


def test_sqs_mapping_redelivers_only_the_reported_failure(probe, aws):
    sqs = aws("sqs")
    queue = probe["BatchQueueUrl"]
    tag = marker()
    bodies = [f"{tag} first", f"{tag} second", f"{tag} probe-fail-once"]

    sqs.send_message_batch(
        QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)]
    )

    name = probe["SqsProbeFunctionName"]
    wait_until(
        lambda: ("2", "ok") in deliveries_by_content(record_lines(name, tag)).get(bodies[2], []),
        timeout=90,
        message="redelivery of the failed message",
    )

    def drained():
        attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
        return (
            attributes["ApproximateNumberOfMessages"] == "0"
            and attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
        )

    wait_until(drained, timeout=30, message="queue drained")
    deliveries = deliveries_by_content(record_lines(name, tag))
    assert deliveries[bodies[0]] == [("1", "ok")]
    assert deliveries[bodies[1]] == [("1", "ok")]
    assert deliveries[bodies[2]] == [("1", "failed"), ("2", "ok")]


# kinesis-mock (behind Kinesis and DynamoDB Streams) lags when other suites write heavily
@pytest.mark.timeout(330)
def test_kinesis_mapping_retries_from_the_reported_failure_only(probe, aws):
    tag = marker()
    data = [f"{tag} first", f"{tag} second", f"{tag} probe-fail-once"]

    aws("kinesis").put_records(
        StreamName=probe["StreamName"], Records=[{"Data": d.encode(), "PartitionKey": tag} for d in data]
    )

    name = probe["KinesisProbeFunctionName"]
    deliveries = wait_until(
        lambda: (found := deliveries_by_content(record_lines(name, tag)))
        and ("2", "ok") in found.get(data[2], [])
        and found,
        timeout=300,
        message="retry of the failed record",
    )
    assert deliveries[data[0]] == [("1", "ok")]
    assert deliveries[data[1]] == [("1", "ok")]
    assert deliveries[data[2]] == [("1", "failed"), ("2", "ok")]


# kinesis-mock (behind Kinesis and DynamoDB Streams) lags when other suites write heavily
@pytest.mark.timeout(330)
def test_dynamodb_stream_mapping_retries_from_the_reported_failure_only(probe, aws):
    tag = marker()
    items = [f"{tag}-first", f"{tag}-second", f"{tag}-probe-fail-once"]
    table = aws("dynamodb")

    for item in items:
        table.put_item(TableName=probe["TableName"], Item={"id": {"S": item}})

    name = probe["StreamProbeFunctionName"]

    def by_item():
        found = {}
        for record in record_lines(name, tag):
            item = next(i for i in items if i in record["content"])
            found.setdefault(item, []).append((record["delivery"], record["outcome"]))
        return found

    deliveries = wait_until(
        lambda: (found := by_item()) and ("2", "ok") in found.get(items[2], []) and found,
        timeout=300,
        message="retry of the failed stream record",
    )
    assert deliveries[items[0]] == [("1", "ok")]
    assert deliveries[items[1]] == [("1", "ok")]
    assert deliveries[items[2]] == [("1", "failed"), ("2", "ok")]


# --- API Gateway ---


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_api_gateway_proxy_integration_returns_the_function_status_and_body(probe):
    base = f"{ENDPOINT}/_aws/execute-api/{probe['ApiId']}/{probe['ApiStageName']}"

    status, body = http("GET", f"{base}/things/42?status=418")
    assert status == 418
    assert body["method"] == "GET"
    assert body["path"] == "/things/42"
    assert body["pathParameters"] == {"proxy": "things/42"}

    status, body = http("POST", f"{base}/orders", body=b'{"n": 1}')
    assert status == 200
    assert body["method"] == "POST" and body["body"] == '{"n": 1}'


def test_api_gateway_refuses_a_body_over_10_mb_and_times_out_at_the_integration_timeout(probe):
    base = f"{ENDPOINT}/_aws/execute-api/{probe['ApiId']}/{probe['ApiStageName']}"

    status, body = http("POST", f"{base}/big", body=b"x" * (10 * 1024 * 1024 + 1))
    assert (status, body) == (413, {"message": "Request Too Long"})

    started = time.monotonic()
    status, body = http("GET", f"{base}/slow?sleep_ms=6000")  # TimeoutInMillis: 3000
    assert (status, body) == (504, {"message": "Endpoint request timed out"})
    assert time.monotonic() - started < 5.5
    status, _ = http("GET", f"{base}/quick?sleep_ms=500")
    assert status == 200


def test_functions_run_in_the_account_and_region_of_the_stack(probe, aws):
    configuration = aws("lambda").get_function(FunctionName=probe["ProbeFunctionName"])["Configuration"]
    assert configuration["FunctionArn"].startswith(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:")
    assert configuration["State"] == "Active"
    assert configuration["Runtime"] == "provided.al2023"


# --- Lambda's limits (infra/localstack/plugin: limits.py, sandbox.py, hooks.py) ---

MB = 1024 * 1024


def client_error_code(call) -> tuple[str, int]:
    """(error code, HTTP status) of a boto3 call expected to fail."""
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"], caught.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_a_response_over_6_mb_fails_as_on_aws_and_one_just_under_passes(probe):
    name = probe["ProbeFunctionName"]

    response, payload = invoke(name, {"respond_bytes": 6 * MB})
    assert "FunctionError" not in response
    assert len(json.dumps(payload)) == 6 * MB

    response, payload = invoke(name, {"respond_bytes": 6 * MB + 101})
    assert response["FunctionError"] == "Unhandled"
    assert payload == {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
    }


def test_request_payloads_over_the_sync_and_async_limits_are_refused(probe, aws):
    name = probe["ProbeFunctionName"]
    lam = aws("lambda", retries={"max_attempts": 1})
    tag = marker()

    def padded(size: int, **fields) -> bytes:
        body = json.dumps({**fields, "pad": ""})
        return json.dumps({**fields, "pad": "x" * (size - len(body))}).encode()

    code, status = client_error_code(lambda: lam.invoke(FunctionName=name, Payload=padded(6 * MB + 1)))
    assert (code, status) == ("RequestEntityTooLargeException", 413)
    code, status = client_error_code(
        lambda: lam.invoke(FunctionName=name, InvocationType="Event", Payload=padded(MB + 1))
    )
    assert (code, status) == ("RequestEntityTooLargeException", 413)

    # under the limits: a 5 MB synchronous and a 300 KB asynchronous event run
    response = lam.invoke(FunctionName=name, Payload=padded(5 * MB, echo_size=True))
    assert "FunctionError" not in response
    assert len(json.loads(response["Payload"].read())["echo"]["pad"]) > 5 * MB - 100
    response = lam.invoke(FunctionName=name, InvocationType="Event", Payload=padded(300 * 1024, log=tag))
    assert response["StatusCode"] == 202
    wait_until(lambda: log_lines(name, contains=f"PROBE-LOG stdout {tag}"), timeout=60)


def test_a_function_allocating_past_its_memory_is_killed_and_reported_out_of_memory(probe):
    name = probe["ProbeFunctionName"]  # MemorySize: 128

    response, payload = invoke(name, {"allocate_mb": 64})
    assert "FunctionError" not in response and payload["allocated_mb"] == 64

    response, payload = invoke(name, {"allocate_mb": 256}, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.OutOfMemory"
    assert "Runtime exited with error: signal: killed" in payload["errorMessage"]
    request_id = response["ResponseMetadata"]["RequestId"]
    report = wait_until(
        lambda: next(
            (line for line in log_lines(name) if line.startswith(f"REPORT RequestId: {request_id}")), None
        ),
        timeout=30,
        message="the REPORT line of the killed invocation",
    )
    assert "Memory Size: 128 MB" in report and "Max Memory Used: 128 MB" in report
    assert "Error Type: Runtime.OutOfMemory" in report
    # the environment starts afresh
    response, payload = invoke(name, {"echo": "after"})
    assert "FunctionError" not in response


def test_two_environments_never_see_each_others_tmp_and_tmp_has_its_configured_size(probe):
    name = probe["SmallTmpProbeFunctionName"]  # EphemeralStorage: 512 MB
    tag = marker()
    results = {}

    def call(label: str, sleep_ms: int):
        results[label] = invoke(name, {"tmp": {"write": f"{label}-{tag}", "bytes": 1024, "sleep_ms": sleep_ms}})[1]

    first = threading.Thread(target=call, args=("one", 4000))
    first.start()
    time.sleep(1.5)  # the first environment is busy: the second call gets its own
    call("two", 0)
    first.join()

    one, two = results["one"], results["two"]
    assert one["pid"] != two["pid"]
    assert one["write"] == {"ok": True} and two["write"] == {"ok": True}
    assert f"one-{tag}" in one["tmp"] and f"two-{tag}" not in one["tmp"]
    assert f"two-{tag}" in two["tmp"] and f"one-{tag}" not in two["tmp"]
    assert one["tmpdir"] == "/tmp"

    _, over = invoke(name, {"tmp": {"write": f"big-{tag}", "bytes": 600 * MB}})
    assert over["write"]["ok"] is False
    assert "No space left on device" in over["write"]["error"]
    _, fits = invoke(name, {"tmp": {"write": f"fits-{tag}", "bytes": 400 * MB}})
    assert fits["write"] == {"ok": True}


def chain_hops(function_name: str, chain_id: str) -> list[int]:
    return sorted(
        int(line.split(" hop=")[1].split()[0])
        for line in log_lines(function_name, contains=f"PROBE-CHAIN id={chain_id} ")
    )


@pytest.mark.timeout(300)
def test_a_self_invoking_chain_stops_at_the_17th_hop_unless_recursive_loop_is_allow(probe, aws):
    lam = aws("lambda")
    stopped, allowed = probe["ChainProbeFunctionName"], probe["AllowChainProbeFunctionName"]
    assert lam.get_function_recursion_config(FunctionName=allowed)["RecursiveLoop"] == "Allow"
    assert lam.get_function_recursion_config(FunctionName=stopped)["RecursiveLoop"] == "Terminate"
    tag = marker()

    for function in (stopped, allowed):
        lam.invoke(
            FunctionName=function,
            InvocationType="Event",
            Payload=json.dumps({"chain": {"id": tag, "hop": 1, "until": 20}}),
        )

    record = wait_until(
        lambda: receive_one(
            aws("sqs"),
            probe["ChainFailureQueueUrl"],
            lambda b: b["requestPayload"].get("chain", {}).get("id") == tag,
        ),
        timeout=240,
        message="the stopped hop in the on-failure destination",
    )
    assert record["requestContext"]["condition"] == "RecursiveInvocationException"
    assert record["requestPayload"]["chain"]["hop"] == 17
    assert chain_hops(stopped, tag) == list(range(1, 17))
    wait_until(lambda: chain_hops(allowed, tag) == list(range(1, 21)), timeout=240, message="20 hops with Allow")
    assert wait_until(lambda: log_lines(allowed, contains=f"PROBE-CHAIN id={tag} hop=20 "), timeout=10)


def test_an_invocation_beyond_reserved_concurrency_is_throttled(probe, aws):
    name = probe["ReservedProbeFunctionName"]  # ReservedConcurrentExecutions: 1
    lam = aws("lambda", retries={"max_attempts": 1})
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 1
    invoke(name, {"warm": True})
    results = {}

    def busy():
        results["busy"] = invoke(name, {"sleep_ms": 4000})

    thread = threading.Thread(target=busy)
    thread.start()
    time.sleep(1.5)
    code, status = client_error_code(lambda: lam.invoke(FunctionName=name, Payload=b'{"n": 2}'))
    thread.join()

    assert (code, status) == ("TooManyRequestsException", 429)
    assert "FunctionError" not in results["busy"][0]
    response = lam.invoke(FunctionName=name, Payload=b'{"n": 3}')
    assert "FunctionError" not in response
