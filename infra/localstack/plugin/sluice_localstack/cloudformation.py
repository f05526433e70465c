"""CloudFormation properties LocalStack's resource providers drop, applied as AWS applies
them, by patching the providers when the emulator starts
(``localstack.hooks.on_infra_start``):

- ``AWS::Kinesis::Stream`` in ``ON_DEMAND`` mode without a ``ShardCount`` starts with 4
  shards, AWS's initial on-demand write capacity (4 MB/s, 4,000 records/s); LocalStack
  created it with 1, so a test of how partition keys spread over shards saw one.
- ``AWS::ApiGateway::Stage`` ``MethodSettings`` (throttling, metrics, logging, caching)
  are applied with ``UpdateStage``; LocalStack's provider ignored them, so a stage read back
  had none of its throttling.
"""

import logging

from localstack.runtime import hooks

LOG = logging.getLogger(__name__)

ON_DEMAND_INITIAL_SHARDS = 4

# MethodSetting property -> its patch path below /{resource}/{method}/.
METHOD_SETTING_PATHS = {
    "ThrottlingRateLimit": "throttling/rateLimit",
    "ThrottlingBurstLimit": "throttling/burstLimit",
    "MetricsEnabled": "metrics/enabled",
    "LoggingLevel": "logging/loglevel",
    "DataTraceEnabled": "logging/dataTrace",
    "CachingEnabled": "caching/enabled",
    "CacheTtlInSeconds": "caching/ttlInSeconds",
    "CacheDataEncrypted": "caching/dataEncrypted",
}


@hooks.on_infra_start()
def apply_cloudformation_fidelity():
    _patch_kinesis_on_demand_shards()
    _patch_stage_method_settings()
    LOG.info("sluice: CloudFormation on-demand shards and stage method settings applied")


def method_setting_patches(settings: list[dict]) -> list[dict]:
    """UpdateStage patch operations for a stage's ``MethodSettings``: the resource path with
    its slashes escaped (``/*`` is every resource, ``*``), then the method."""
    operations = []
    for setting in settings or []:
        resource = setting.get("ResourcePath") or "/*"
        resource = "*" if resource == "/*" else resource.lstrip("/").replace("/", "~1")
        method = setting.get("HttpMethod") or "*"
        for name, path in METHOD_SETTING_PATHS.items():
            if name in setting and setting[name] is not None:
                value = setting[name]
                value = str(value).lower() if isinstance(value, bool) else str(value)
                operations.append({"op": "replace", "path": f"/{resource}/{method}/{path}", "value": value})
    return operations


def _patch_kinesis_on_demand_shards():
    from localstack.services.kinesis.resource_providers.aws_kinesis_stream import KinesisStreamProvider
    from localstack.utils.patch import patch

    @patch(KinesisStreamProvider.create)
    def create(fn, self, request):
        model = request.desired_state
        mode = (model.get("StreamModeDetails") or {}).get("StreamMode")
        if mode == "ON_DEMAND" and not model.get("ShardCount"):
            model["ShardCount"] = ON_DEMAND_INITIAL_SHARDS
        return fn(self, request)


def _patch_stage_method_settings():
    from localstack.services.apigateway.resource_providers.aws_apigateway_stage import ApiGatewayStageProvider
    from localstack.services.cloudformation.resource_provider import OperationStatus
    from localstack.utils.patch import patch

    @patch(ApiGatewayStageProvider.create)
    def create(fn, self, request):
        event = fn(self, request)
        model = request.desired_state
        operations = method_setting_patches(model.get("MethodSettings"))
        if event.status == OperationStatus.SUCCESS and operations:
            request.aws_client_factory.apigateway.update_stage(
                restApiId=model["RestApiId"], stageName=model["StageName"], patchOperations=operations
            )
        return event
