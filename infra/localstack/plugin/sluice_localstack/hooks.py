"""Lambda limits that belong to the Lambda *service*, not to one execution
environment, applied by patching LocalStack's Lambda service when the
emulator starts (``localstack.hooks.on_infra_start``):

- ``payload``: Invoke requests over 6 MB (synchronous) or 1 MB (``Event``)
  fail with ``RequestEntityTooLargeException`` (413), as on AWS. Event source
  mappings, S3, SNS and API Gateway reach the function through the same
  service call, so the limit holds behind every trigger.
- ``recursion``: the 17th invocation of the same chain of requests through
  one function is stopped with ``RecursiveInvocationException`` unless the
  function's ``RecursiveLoop`` is ``Allow``; an asynchronous event stopped
  this way goes to the function's on-failure destination and dead-letter
  queue at once (condition ``RecursiveInvocationException``), not retried.
  The count travels in the trace header's ``Lineage`` (see ``limits.py``).
- ``apigateway``: a REST API's Lambda proxy integration refuses a request body
  over 10 MB (413 ``Request Too Long``) and answers 504 ``Endpoint request
  timed out`` when the function has not answered within the integration's
  ``TimeoutInMillis`` (29 s by default), as API Gateway does; LocalStack
  applies neither. And a ``Content-Encoding: gzip`` request body reaches the
  function as sent (base64 under the API's binary media types), as on AWS
  without API compression: LocalStack's gateway inflated it first, so the
  event carried the inflated body (and could pass the 6 MB payload limit).
- ``concurrency``: CloudFormation's ``ReservedConcurrentExecutions`` and
  ``RecursiveLoop`` properties of ``AWS::Lambda::Function`` are applied
  (LocalStack's resource provider ignores them); LocalStack's Lambda service
  already throttles invocations beyond a function's reserved concurrency.

The per-environment limits (response size, memory, ``/tmp``) are in
``executor.py``.
"""

import inspect
import logging
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from localstack.runtime import hooks

from sluice_localstack import limits

LOG = logging.getLogger(__name__)


@hooks.on_infra_start()
def apply_lambda_service_limits():
    if limits.enabled("payload") or limits.enabled("recursion"):
        _patch_invoke()
    if limits.enabled("recursion"):
        _patch_async_recursion_failure()
    if limits.enabled("concurrency") or limits.enabled("recursion"):
        _patch_cloudformation_function()
    if limits.enabled("apigateway"):
        _patch_api_gateway_proxy()
    off = [name for name in limits.LIMITS if not limits.enabled(name)]
    LOG.info("sluice: Lambda limits applied%s", f" (off: {', '.join(off)})" if off else "")


def _patch_invoke():
    from localstack.aws.api.lambda_ import InvocationType, RecursiveInvocationException, RecursiveLoop
    from localstack.services.lambda_.api_utils import unqualified_lambda_arn
    from localstack.services.lambda_.invocation.lambda_models import RequestEntityTooLargeException
    from localstack.services.lambda_.invocation.lambda_service import LambdaService
    from localstack.services.lambda_.invocation.models import lambda_stores
    from localstack.utils.patch import patch
    from localstack.utils.xray.trace_header import TraceHeader

    signature = inspect.signature(LambdaService.invoke)

    @patch(LambdaService.invoke)
    def invoke(fn, self, *args, **kwargs):
        call = signature.bind(self, *args, **kwargs)
        arguments = call.arguments
        asynchronous = arguments.get("invocation_type") == InvocationType.Event
        if limits.enabled("payload"):
            message = limits.request_too_large(len(arguments.get("payload") or b""), asynchronous)
            if message:
                raise RequestEntityTooLargeException(message)
        # An Event invoke is counted when the event manager runs it (a RequestResponse call
        # carrying the event's trace header), so every invocation is counted exactly once.
        if limits.enabled("recursion") and not asynchronous:
            function = lambda_stores[arguments["account_id"]][arguments["region"]].functions.get(
                arguments["function_name"]
            )
            if function is not None:
                trace_context = dict(arguments.get("trace_context") or {})
                header = trace_context.get("aws_trace_header")
                if isinstance(header, str) or header is None:
                    header = TraceHeader.from_header_str(header).ensure_root_exists()
                arn = unqualified_lambda_arn(
                    arguments["function_name"], arguments["account_id"], arguments["region"]
                )
                lineage, count = limits.next_lineage(header.lineage, arn)
                if count > limits.MAX_RECURSIVE_INVOCATIONS and function.recursive_loop != RecursiveLoop.Allow:
                    LOG.warning(
                        "sluice: stopped invocation %s of %s: recursive loop (RecursiveLoop=%s)",
                        count,
                        arn,
                        function.recursive_loop,
                    )
                    raise RecursiveInvocationException(
                        "Lambda has detected that your function is being invoked in a recursive loop "
                        f"({count} invocations of one chain of requests; RecursiveLoop is "
                        f"{function.recursive_loop})."
                    )
                trace_context["aws_trace_header"] = TraceHeader(
                    root=header.root,
                    parent=header.parent,
                    sampled=header.sampled,
                    data=header.data,
                    lineage=lineage,
                )
                arguments["trace_context"] = trace_context
        return fn(*call.args, **call.kwargs)


def _patch_async_recursion_failure():
    from localstack.services.lambda_.invocation.event_manager import Poller
    from localstack.utils.patch import patch

    @patch(Poller._handle_invoke_exception)
    def handle_invoke_exception(fn, self, sqs_invocation, error, event_invoke_config):
        code = getattr(error, "response", {}).get("Error", {}).get("Code")
        if code != "RecursiveInvocationException":
            return fn(self, sqs_invocation, error, event_invoke_config)
        # AWS drops the event of a recursive loop to the failure destinations, without retries
        self.process_failure_destination(sqs_invocation, None, event_invoke_config, code)
        self.process_dead_letter_queue(sqs_invocation, None)
        from localstack.services.lambda_.analytics import FunctionStatus

        return FunctionStatus.invocation_error


def _patch_cloudformation_function():
    from localstack.services.cloudformation.resource_provider import OperationStatus
    from localstack.services.lambda_.resource_providers.aws_lambda_function import (
        LambdaFunctionProvider,
    )
    from localstack.utils.patch import patch

    def apply(request, previous: dict | None):
        model = request.desired_state
        name = model.get("FunctionName") or model.get("Arn")
        client = request.aws_client_factory.lambda_
        if limits.enabled("concurrency"):
            reserved = model.get("ReservedConcurrentExecutions")
            if reserved is not None:
                client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=int(reserved))
            elif previous and previous.get("ReservedConcurrentExecutions") is not None:
                client.delete_function_concurrency(FunctionName=name)
        if limits.enabled("recursion"):
            loop = model.get("RecursiveLoop")
            if loop or (previous and previous.get("RecursiveLoop")):
                client.put_function_recursion_config(FunctionName=name, RecursiveLoop=loop or "Terminate")

    @patch(LambdaFunctionProvider.create)
    def create(fn, self, request):
        event = fn(self, request)
        if event.status == OperationStatus.SUCCESS:
            apply(request, None)
        return event

    @patch(LambdaFunctionProvider.update)
    def update(fn, self, request):
        event = fn(self, request)
        if event.status == OperationStatus.SUCCESS:
            apply(request, request.previous_state or {})
        return event


def _patch_api_gateway_proxy():
    from localstack.services.apigateway.next_gen.execute_api.gateway_response import (
        IntegrationTimeoutError,
        RequestTooLargeError,
    )
    from localstack.services.apigateway.next_gen.execute_api.integrations.aws import (
        RestApiAwsProxyIntegration,
    )
    from localstack.aws.handlers.codec import ContentDecoder
    from localstack.utils.patch import patch

    @patch(ContentDecoder.__call__)
    def decode(fn, self, chain, context, response):
        path = context.request.path or ""
        host = context.request.host or ""
        if path.startswith("/_aws/execute-api/") or "/_user_request_" in path or ".execute-api." in host:
            return None  # API Gateway hands the integration the body as the client sent it
        return fn(self, chain, context, response)

    @patch(RestApiAwsProxyIntegration.invoke)
    def invoke(fn, self, context):
        body = (context.invocation_request or {}).get("body") or b""
        if len(body) > limits.MAX_API_REQUEST_BYTES:
            raise RequestTooLargeError("Request Too Long")
        timeout_ms = int(
            (context.integration or {}).get("timeoutInMillis") or limits.DEFAULT_API_INTEGRATION_TIMEOUT_MS
        )
        result: Future = Future()

        def call():
            try:
                result.set_result(fn(self, context))
            except BaseException as e:  # handed to the waiting request
                result.set_exception(e)

        # the function keeps running after the timeout, as it does behind API Gateway
        threading.Thread(target=call, name="sluice-apigw-integration", daemon=True).start()
        try:
            return result.result(timeout=timeout_ms / 1000)
        except FutureTimeout:
            LOG.warning("sluice: API Gateway integration timed out after %s ms", timeout_ms)
            raise IntegrationTimeoutError("Endpoint request timed out") from None
