"""Alarms and the dashboard: every place the stack parks data, every function's errors and
throttles, the stream mappings' iterator age and the API's 5xx answers alarm on one topic,
and a dashboard shows each function's EMF metrics.

LocalStack evaluates metric alarms and reports SQS queue depths to CloudWatch (every 60 s),
so a message put on a failure queue drives its alarm to ``ALARM`` and the alarm topic
delivers the notification, as on AWS. Lambda's ``Errors``/``Throttles``/``IteratorAge``
and API Gateway's ``5XXError`` are not reported by LocalStack: for those the tests check
the deployed alarms' metric, dimensions, threshold and action only.
"""

import json

import pytest

from conftest import marker, wait_until

# Every output that names a queue holding parked data: failure queues, DLQs, redrive queues.
PARKING_QUEUES = {
    "ArchiverFailureQueueUrl",
    "AvroConverterFailureQueueUrl",
    "CrashNotificationDlqUrl",
    "CounterMapperFailureQueueUrl",
    "CounterUploadsDeliveryQueueUrl",
    "CounterAggregatorFailureQueueUrl",
    "CounterReporterFailureQueueUrl",
    "JobPollerFailureQueueUrl",
}
FUNCTIONS = {
    "IngestApiFunctionName", "KinesisArchiverFunctionName", "AvroConverterFunctionName",
    "CrashRouterFunctionName", "CounterMapperFunctionName", "CounterAggregatorFunctionName",
    "CounterReporterFunctionName", "JobPollerFunctionName",
}
STREAM_FUNCTIONS = {"KinesisArchiverFunctionName", "CounterAggregatorFunctionName", "CounterReporterFunctionName"}


@pytest.fixture(scope="module")
def stack(deploy):
    """A stack of its own: the test parks a message, which must not meet other tests' counts."""
    return deploy("infra/pipeline.yaml")


def alarms(aws, outputs) -> list[dict]:
    found, token = [], None
    cloudwatch = aws("cloudwatch")
    while True:
        page = cloudwatch.describe_alarms(AlarmNamePrefix=f"{outputs['StackName']}-", **({"NextToken": token} if token else {}))
        found += page["MetricAlarms"]
        token = page.get("NextToken")
        if not token:
            return found


def dimension(alarm: dict, name: str) -> str | None:
    return next((d["Value"] for d in alarm.get("Dimensions", []) if d["Name"] == name), None)


def test_every_parking_queue_every_function_and_the_api_have_alarms_on_one_topic(stack, aws):
    found = alarms(aws, stack)
    assert found
    assert {tuple(a["AlarmActions"]) for a in found} == {(stack["AlarmTopicArn"],)}
    assert all(a["ComparisonOperator"] == "GreaterThanThreshold" and a["TreatMissingData"] == "notBreaching" for a in found)

    queue_names = {stack[o].rsplit("/", 1)[1] for o in PARKING_QUEUES}
    depth = [a for a in found if a["Namespace"] == "AWS/SQS"]
    assert {dimension(a, "QueueName") for a in depth} == queue_names
    assert all(a["MetricName"] == "ApproximateNumberOfMessagesVisible" and a["Threshold"] == 0 for a in depth)

    functions = {stack[o] for o in FUNCTIONS}
    for metric in ("Errors", "Throttles"):
        assert {dimension(a, "FunctionName") for a in found if a["MetricName"] == metric} == functions, metric
    iterator = [a for a in found if a["MetricName"] == "IteratorAge"]
    assert {dimension(a, "FunctionName") for a in iterator} == {stack[o] for o in STREAM_FUNCTIONS}
    assert {a["Threshold"] for a in iterator} == {300_000.0}

    api = [a for a in found if a["Namespace"] == "AWS/ApiGateway"]
    assert [(a["MetricName"], dimension(a, "ApiName"), dimension(a, "Stage")) for a in api] == [
        ("5XXError", f"{stack['StackName']}-ingest", stack["IngestApiStageName"])
    ]
    assert len(found) == len(depth) + 2 * len(functions) + len(iterator) + len(api)


def test_the_dashboard_shows_every_functions_emf_metrics_and_the_parked_queues(stack, aws):
    body = json.loads(aws("cloudwatch").get_dashboard(DashboardName=stack["OperationsDashboardName"])["DashboardBody"])
    text = json.dumps(body)
    for output in FUNCTIONS:
        name = stack[output]
        assert f'{{sluice,Function}} Function=\\"{name}\\"' in text, name
    for output in PARKING_QUEUES:
        assert stack[output].rsplit("/", 1)[1] in text, output


def test_a_fresh_stack_has_nothing_parked_not_even_s3s_test_event(stack, aws):
    """S3 sends ``s3:TestEvent`` to a notification's destination when it is configured: the
    archiver's failure bucket notifies through a topic whose subscription filters it out, so
    a fresh stack's failure queues are empty and their alarms have nothing to go off on."""
    sqs = aws("sqs")
    for output in sorted(PARKING_QUEUES):
        attributes = sqs.get_queue_attributes(
            QueueUrl=stack[output], AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        assert attributes == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}, output


@pytest.mark.timeout(300)
def test_a_message_parked_on_a_failure_queue_raises_its_alarm_and_notifies_the_topic(stack, aws):
    sqs, sns = aws("sqs"), aws("sns")
    sink = sqs.create_queue(QueueName=f"alarm-sink-{marker()}")["QueueUrl"]
    sink_arn = sqs.get_queue_attributes(QueueUrl=sink, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=stack["AlarmTopicArn"], Protocol="sqs", Endpoint=sink_arn, Attributes={"RawMessageDelivery": "true"})

    queue = stack["CrashNotificationDlqUrl"]
    name = next(a["AlarmName"] for a in alarms(aws, stack) if dimension(a, "QueueName") == queue.rsplit("/", 1)[1])
    cloudwatch = aws("cloudwatch")
    assert cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"] != "ALARM"

    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"parked": marker()}))
    wait_until(
        lambda: cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"] == "ALARM",
        timeout=200, interval=5, message=f"{name} in ALARM",
    )

    def notified():
        got = sqs.receive_message(QueueUrl=sink, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", [])
        return [m for m in (json.loads(g["Body"]) for g in got) if m.get("AlarmName") == name and m.get("NewStateValue") == "ALARM"]

    [notice] = wait_until(notified, timeout=60, message="the alarm's notification on the topic")
    assert notice["Trigger"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    # Nothing else in the stack is parked, so no other alarm went off.
    others = [a["AlarmName"] for a in alarms(aws, stack) if a["StateValue"] == "ALARM" and a["AlarmName"] != name]
    assert others == []
