"""The fault-injecting proxy itself, checked with boto3 through it against LocalStack:
passes calls through unchanged, answers each fault in the form the SDKs recognise, and
fails Kinesis/SQS batch entries without writing them."""

import botocore.exceptions
import pytest

from conftest import client, marker
from faultproxy import FaultProxy, Rule


@pytest.fixture(scope="module")
def proxy(localstack):
    p = FaultProxy(localstack, seed=11).start()
    yield p
    p.stop()


def via(proxy, service):
    return client(service, proxy.url, retries={"total_max_attempts": 1, "mode": "standard"})


def error_code(call):
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        call()
    return raised.value.response["Error"]["Code"], raised.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_passes_calls_through_and_counts_them(proxy, aws):
    proxy.clear()
    bucket = f"proxy-{marker()}"
    s3 = via(proxy, "s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"x" * 70_000)
    assert aws("s3").get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"x" * 70_000
    assert s3.get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"x" * 70_000
    assert proxy.stats[("s3", "PutObject", "pass")] == 1
    assert proxy.stats[("s3", "GetObject", "pass")] == 1
    assert proxy.injected() == 0


@pytest.mark.parametrize(
    "service,call,code,status",
    [
        ("s3", lambda c: c.list_buckets(), "SlowDown", 503),
        ("dynamodb", lambda c: c.list_tables(), "ProvisionedThroughputExceededException", 400),
        ("kinesis", lambda c: c.list_streams(), "ProvisionedThroughputExceededException", 400),
        ("sqs", lambda c: c.list_queues(), "ThrottlingException", 400),
        ("sns", lambda c: c.list_topics(), "Throttling", 400),
        ("lambda", lambda c: c.list_functions(), "TooManyRequestsException", 429),
    ],
)
def test_throttles_in_each_protocol(proxy, service, call, code, status):
    proxy.set_rules([Rule(service, throttle=1.0)])
    assert error_code(lambda: call(via(proxy, service))) == (code, status)
    assert proxy.injected() == 1


def test_internal_errors_and_dropped_connections(proxy):
    proxy.set_rules([Rule("dynamodb", error500=1.0), Rule("sqs", drop=1.0)])
    assert error_code(lambda: via(proxy, "dynamodb").list_tables()) == ("InternalFailure", 500)
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        via(proxy, "sqs").list_queues()
    assert proxy.summary() == {"dynamodb.ListTables error500": 1, "sqs.ListQueues drop": 1}


def test_deny_is_permanent_and_when_limits_a_rule_to_matching_requests(proxy, aws):
    bucket = f"proxy-{marker()}"
    aws("s3").create_bucket(Bucket=bucket)
    proxy.set_rules([Rule("s3", "PutObject", deny=1.0, when=lambda method, path, body: b"POISON" in body)])
    s3 = via(proxy, "s3")
    assert error_code(lambda: s3.put_object(Bucket=bucket, Key="bad", Body=b"a POISON b")) == ("AccessDenied", 403)
    s3.put_object(Bucket=bucket, Key="good", Body=b"fine")
    assert proxy.summary() == {"s3.PutObject deny": 1, "s3.PutObject pass": 1}
    assert [o["Key"] for o in aws("s3").list_objects_v2(Bucket=bucket)["Contents"]] == ["good"]

def test_a_lost_response_still_writes(proxy, aws):
    queue = aws("sqs").create_queue(QueueName=f"proxy-{marker()}")["QueueUrl"]
    proxy.set_rules([Rule("sqs", "SendMessage", drop_response=1.0)])
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        via(proxy, "sqs").send_message(QueueUrl=queue, MessageBody="stored anyway")
    assert proxy.summary() == {"sqs.SendMessage drop_response": 1}
    got = aws("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
    assert [m["Body"] for m in got["Messages"]] == ["stored anyway"]
    aws("sqs").delete_queue(QueueUrl=queue)


def test_partial_put_records_fail_entries_that_are_then_not_written(proxy, aws):
    stream = f"proxy-{marker()}"
    aws("kinesis").create_stream(StreamName=stream, ShardCount=1)
    aws("kinesis").get_waiter("stream_exists").wait(StreamName=stream)
    proxy.set_rules([Rule("kinesis", "PutRecords", partial=0.3)], seed=5)
    records = [{"Data": f"r{i}".encode(), "PartitionKey": "k"} for i in range(100)]
    answer = via(proxy, "kinesis").put_records(StreamName=stream, Records=records)
    failed = [i for i, r in enumerate(answer["Records"]) if r.get("ErrorCode")]
    assert len(answer["Records"]) == 100
    assert answer["FailedRecordCount"] == len(failed) == proxy.stats[("kinesis", "PutRecords", "partial_entries")]
    assert 10 < len(failed) < 50
    kinesis = aws("kinesis")
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    written = [r["Data"] for r in kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]]
    assert written == [f"r{i}".encode() for i in range(100) if i not in failed]
    kinesis.delete_stream(StreamName=stream)


def test_partial_send_message_batch_fails_entries_that_are_then_not_sent(proxy, aws):
    queue = aws("sqs").create_queue(QueueName=f"proxy-{marker()}")["QueueUrl"]
    proxy.set_rules([Rule("sqs", "SendMessageBatch", partial=0.5)], seed=3)
    sqs = via(proxy, "sqs")
    sent, failed = set(), set()
    for batch in range(5):
        entries = [{"Id": str(i), "MessageBody": f"{batch}-{i}"} for i in range(10)]
        answer = sqs.send_message_batch(QueueUrl=queue, Entries=entries)
        sent |= {f"{batch}-{e['Id']}" for e in answer.get("Successful", [])}
        failed |= {f"{batch}-{e['Id']}" for e in answer.get("Failed", [])}
    assert len(sent) + len(failed) == 50 and failed and sent
    assert len(failed) == proxy.stats[("sqs", "SendMessageBatch", "partial_entries")]
    received = set()
    while True:
        page = aws("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        if not page.get("Messages"):
            break
        for message in page["Messages"]:
            received.add(message["Body"])
            aws("sqs").delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    assert received == sent
    aws("sqs").delete_queue(QueueUrl=queue)


def test_first_forces_outcomes_in_order_then_the_dice_decide(proxy, aws):
    queue = aws("sqs").create_queue(QueueName=f"proxy-{marker()}")["QueueUrl"]
    first = ("throttle", "pass", "drop", "partial", "drop_response", "error500")
    proxy.set_rules([Rule("sqs", "SendMessageBatch", first=first)])
    sqs = via(proxy, "sqs")
    entries = [{"Id": str(i), "MessageBody": f"m{i}"} for i in range(3)]

    def send():
        return sqs.send_message_batch(QueueUrl=queue, Entries=entries)

    assert error_code(send) == ("ThrottlingException", 400)
    assert len(send()["Successful"]) == 3
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        send()
    answer = send()
    assert [e["Id"] for e in answer["Failed"]] == ["0"] and len(answer["Successful"]) == 2
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        send()
    assert error_code(send) == ("InternalError", 500)
    # The schedule is spent, and this rule has no probabilities: every later call passes.
    for _ in range(5):
        assert len(send()["Successful"]) == 3
    assert proxy.summary() == {
        "sqs.SendMessageBatch drop": 1,
        "sqs.SendMessageBatch drop_response": 1,
        "sqs.SendMessageBatch error500": 1,
        "sqs.SendMessageBatch partial_entries": 1,
        "sqs.SendMessageBatch pass": 7,
        "sqs.SendMessageBatch throttle": 1,
    }
    aws("sqs").delete_queue(QueueUrl=queue)


def test_first_names_only_known_outcomes():
    with pytest.raises(ValueError, match="unknown forced outcome"):
        Rule("sqs", first=("thottle",))


@pytest.mark.timeout(300)
def test_a_faulty_pipeline_sends_its_functions_calls_through_the_proxy(faulty_pipeline, fault_proxy, aws):
    """The plumbing every fault test relies on: with ``AwsEndpointUrl`` set, a function's
    AWS calls reach the proxy (and its faults reach the function)."""
    import json
    import urllib.error
    import urllib.request

    from conftest import ENDPOINT

    outputs = faulty_pipeline
    key = aws("apigateway").get_api_key(apiKey=outputs["IngestApiKeyId"], includeValue=True)["value"]
    url = f"{ENDPOINT}/_aws/execute-api/{outputs['IngestApiId']}/{outputs['IngestApiStageName']}/events"

    def post():
        request = urllib.request.Request(
            url,
            data=json.dumps({"player_id": "p", "run": marker()}).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "x-api-key": key},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status
        except urllib.error.HTTPError as e:
            return e.code

    fault_proxy.set_rules([Rule("kinesis", "PutRecords", throttle=1.0)])
    assert post() == 503
    assert fault_proxy.stats[("kinesis", "PutRecords", "throttle")] >= 2  # the SDK retried, then gave up
    fault_proxy.clear()
    assert post() == 202
    assert fault_proxy.stats[("kinesis", "PutRecords", "pass")] == 1
