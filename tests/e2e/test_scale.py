"""Stream capacity as a choice, and the load test (issue: carry the seeds' own load).

- The default stack's stream is on-demand, and API Gateway's throttle (stage and usage
  plan) is the one ``Mappings.StreamCapacity`` derives for it; the fault stack is deployed
  with one provisioned shard and gets that shard's throttle. Both read back from LocalStack.
- ``tools/load/sluice_load.py`` (``just load``) at a CI-sized workload against the default
  stack: every event sent is accepted, archived exactly once, and spread over the stream's
  shards by its partition key; a run with one hot key lands on one shard, still exactly once.
  Full-size rates are ``just load``'s (docs/SCALE.md); ``SLUICE_SCALE=full`` runs them here.
"""

import os
import sys

import pytest
import yaml

from conftest import ENDPOINT, FAULT_STACK_CAPACITY, REPO

sys.path.insert(0, str(REPO / "tools" / "load"))

import sluice_load  # noqa: E402

FULL = os.environ.get("SLUICE_SCALE") == "full"
RATE, SECONDS = (200, 60) if FULL else (200, 15)  # 200 events/s: the highest rate sustained here (docs/SCALE.md)


def capacity_table() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    # CloudFormation's short forms (!Ref, !If, ...) as plain values: only Mappings is read.
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((REPO / "infra" / "pipeline.yaml").read_text(), Loader=Loader)
    return template["Mappings"]["StreamCapacity"]


def stream_and_throttle(aws, outputs) -> tuple[dict, dict, dict]:
    summary = aws("kinesis").describe_stream_summary(StreamName=outputs["EventStreamName"])["StreamDescriptionSummary"]
    apigw = aws("apigateway")
    plans = [
        p for p in apigw.get_usage_plans()["items"]
        if any(s["apiId"] == outputs["IngestApiId"] for s in p.get("apiStages", []))
    ]
    assert len(plans) == 1, plans
    stage = apigw.get_stage(restApiId=outputs["IngestApiId"], stageName=outputs["IngestApiStageName"])
    return summary, plans[0]["throttle"], stage.get("methodSettings", {})


def assert_throttle(plan: dict, method_settings: dict, expected: dict) -> None:
    assert (plan["rateLimit"], plan["burstLimit"]) == (expected["RateLimit"], expected["BurstLimit"])
    assert {
        k: (v["throttlingRateLimit"], v["throttlingBurstLimit"]) for k, v in method_settings.items()
    } == {"*/*": (expected["RateLimit"], expected["BurstLimit"])}


def test_the_default_stream_is_on_demand_and_the_api_throttle_follows_it(pipeline, aws):
    summary, plan, method_settings = stream_and_throttle(aws, pipeline)
    assert summary["StreamModeDetails"]["StreamMode"] == "ON_DEMAND"
    assert summary["OpenShardCount"] > 1, "on-demand streams start with several shards"
    assert pipeline["EventStreamCapacity"] == "on-demand"
    expected = capacity_table()["on-demand"]
    assert_throttle(plan, method_settings, expected)
    assert int(pipeline["IngestThrottleRateLimit"]) == expected["RateLimit"]
    mapping = aws("lambda").list_event_source_mappings(FunctionName=pipeline["KinesisArchiverFunctionName"])[
        "EventSourceMappings"
    ][0]
    assert mapping["ParallelizationFactor"] == 1


def test_a_provisioned_stream_has_its_shards_and_their_throttle(faulty_pipeline, aws):
    shards = FAULT_STACK_CAPACITY["StreamCapacity"]
    summary, plan, method_settings = stream_and_throttle(aws, faulty_pipeline)
    assert summary["StreamModeDetails"]["StreamMode"] == "PROVISIONED"
    assert summary["OpenShardCount"] == int(shards)
    assert_throttle(plan, method_settings, capacity_table()[shards])


def test_the_capacity_table_throttles_no_more_than_the_stream_takes():
    table = capacity_table()
    for capacity, limits in table.items():
        records_per_second = 4000 if capacity == "on-demand" else 1000 * int(capacity)
        # API Gateway's regional default quota is the ceiling: 10,000 requests/s, burst 5,000.
        assert limits["RateLimit"] == min(records_per_second, 10_000), capacity
        assert limits["BurstLimit"] == (2 * records_per_second if records_per_second < 10_000 else 5_000), capacity


def test_the_load_test_only_targets_this_machine():
    for url in ("http://localhost:4566", "http://127.0.0.1:4566", "http://127.9.9.9:1", "http://[::1]:4566"):
        sluice_load.require_loopback(url)
    for url in ("http://10.0.0.1:4566", "http://192.168.1.1:4566", "https://kinesis.us-east-1.amazonaws.com"):
        with pytest.raises(sluice_load.UsageError):
            sluice_load.require_loopback(url)


def load(pipeline, **options) -> dict:
    args = sluice_load.parse_args(
        ["--rate", str(options.pop("rate")), "--seconds", str(options.pop("seconds")),
         "--endpoint-url", ENDPOINT, "--settle", "90"]
        + [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    )
    args.outputs = None
    args.stack = None
    lines = []
    summary = sluice_load.run(args, out=lines.append, outputs=pipeline)
    print("\n".join(lines))
    return summary


@pytest.mark.timeout(600)
def test_load_is_accepted_and_archived_exactly_once_spread_over_the_shards(pipeline, aws):
    summary = load(pipeline, rate=RATE, seconds=SECONDS, per_request=50, clients=4)
    total = RATE * SECONDS
    assert summary["sent"] == total
    assert summary["accepted"] == total, summary
    assert summary["refused"] == 0, summary["refusals"]
    assert summary["archived"] == total
    assert summary["lost"] == 0
    assert summary["duplicated"] == 0
    assert summary["unacknowledged"] == 0
    assert summary["ok"]
    shards = aws("kinesis").describe_stream_summary(StreamName=pipeline["EventStreamName"])[
        "StreamDescriptionSummary"
    ]["OpenShardCount"]
    per_shard = summary["events_per_shard"]
    assert len(per_shard) == shards, per_shard
    # 10,000 players hashed over the shards: none gets less than half its even share.
    assert min(per_shard.values()) > total / shards / 2, per_shard


@pytest.mark.timeout(300)
def test_one_hot_partition_key_lands_on_one_shard_still_exactly_once(pipeline):
    summary = load(pipeline, rate=100, seconds=5, per_request=20, clients=2, keys="hot")
    assert (summary["sent"], summary["accepted"], summary["archived"]) == (500, 500, 500)
    assert (summary["lost"], summary["duplicated"], summary["refused"]) == (0, 0, 0)
    assert len(summary["events_per_shard"]) == 1, summary["events_per_shard"]
