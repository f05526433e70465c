"""``AWS::CloudWatch::Dashboard`` for LocalStack's CloudFormation: its community edition has
no provider for the type ("deploys" it as a no-op whose ``!Ref`` is ``unknown``), although
its CloudWatch service keeps dashboards (``PutDashboard``/``GetDashboard``). This provider
creates, updates and deletes the dashboard as AWS does, so the stack's dashboard can be read
back and its body checked.
"""

from __future__ import annotations

from localstack.services.cloudformation.resource_provider import (
    CloudFormationResourceProviderPlugin,
    OperationStatus,
    ProgressEvent,
    ResourceProvider,
    ResourceRequest,
)
import localstack.services.cloudformation.provider_utils as util

SCHEMA = {
    "typeName": "AWS::CloudWatch::Dashboard",
    "properties": {
        "DashboardName": {"type": "string"},
        "DashboardBody": {"type": "string"},
    },
    "required": ["DashboardBody"],
    "createOnlyProperties": ["/properties/DashboardName"],
    "primaryIdentifier": ["/properties/DashboardName"],
    "additionalProperties": False,
}


class CloudWatchDashboardProvider(ResourceProvider[dict]):
    TYPE = "AWS::CloudWatch::Dashboard"
    SCHEMA = SCHEMA

    def create(self, request: ResourceRequest[dict]) -> ProgressEvent[dict]:
        model = request.desired_state
        if not model.get("DashboardName"):
            model["DashboardName"] = util.generate_default_name(
                stack_name=request.stack_name, logical_resource_id=request.logical_resource_id
            )
        request.aws_client_factory.cloudwatch.put_dashboard(
            DashboardName=model["DashboardName"], DashboardBody=model["DashboardBody"]
        )
        return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=model)

    def update(self, request: ResourceRequest[dict]) -> ProgressEvent[dict]:
        model = request.desired_state
        model["DashboardName"] = model.get("DashboardName") or (request.previous_state or {}).get("DashboardName")
        request.aws_client_factory.cloudwatch.put_dashboard(
            DashboardName=model["DashboardName"], DashboardBody=model["DashboardBody"]
        )
        return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=model)

    def delete(self, request: ResourceRequest[dict]) -> ProgressEvent[dict]:
        model = request.desired_state
        if model.get("DashboardName"):
            request.aws_client_factory.cloudwatch.delete_dashboards(DashboardNames=[model["DashboardName"]])
        return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=model)


class CloudWatchDashboardProviderPlugin(CloudFormationResourceProviderPlugin):
    name = "AWS::CloudWatch::Dashboard"

    def __init__(self):
        self.factory: type[ResourceProvider] | None = None

    def load(self):
        self.factory = CloudWatchDashboardProvider
