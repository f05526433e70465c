"""Deploy a CloudFormation template with sluice's release zips, and print its outputs.

    python infra/deploy.py [--template infra/pipeline.yaml] [--stack sluice] [--param Key=Value ...]
                           [--endpoint-url URL | --aws] [--code-bucket NAME] [--json]

Parameter conventions (filled only when the template declares them):
- ``CodeBucket``: the bucket holding the zips (created if missing);
- ``EnableCatalog``: ``false`` when deploying to LocalStack (its community edition has no Glue
  or Athena; pass ``--param EnableCatalog=true`` to override);
- ``<BinNameInPascalCase>CodeKey`` (e.g. ``LambdaProbeCodeKey``): the key of
  ``$CARGO_TARGET_DIR/lambda/<bin-name>/bootstrap.zip`` (``just build``), uploaded
  as ``<bin-name>/<sha256>.zip`` so changed code changes the parameter and
  updates the function, and unchanged code is neither uploaded nor redeployed.

Creates the stack or updates it ("no updates are to be performed" is success),
waits, and on failure prints the failed resources with their reasons.
By default it talks to LocalStack (``http://localhost:$SLUICE_LOCALSTACK_PORT``,
credentials test/test); ``--aws`` uses the normal AWS credential chain.

Import ``deploy()`` from tests to get the outputs as a dict.
"""

import argparse
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

import boto3
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError, WaiterError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TEMPLATE = REPO / "infra" / "pipeline.yaml"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
MAX_TEMPLATE_BODY = 51_200
CODE_KEY_SUFFIX = "CodeKey"
# Glue and Athena resources are off on LocalStack: community has neither service.
CATALOG_SWITCH = "EnableCatalog"


class DeployError(Exception):
    pass


def localstack_endpoint() -> str:
    return f"http://localhost:{os.environ.get('SLUICE_LOCALSTACK_PORT') or 4566}"


def lambda_zip_dir() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR") or str(
        Path(os.environ.get("SLUICE_CACHE") or Path.home() / ".cache" / "sluice") / "target"
    )
    return Path(target) / "lambda"


def bin_name(code_key_parameter: str) -> str:
    """``LambdaProbeCodeKey`` -> ``lambda-probe``."""
    pascal = code_key_parameter.removesuffix(CODE_KEY_SUFFIX)
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", pascal).lower()


def session(endpoint_url: str | None, region: str) -> tuple[boto3.Session, dict]:
    """A boto3 session and client kwargs: LocalStack (fixed test credentials) or AWS."""
    if endpoint_url:
        return (
            boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name=region),
            {
                "endpoint_url": endpoint_url,
                "config": Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5}),
            },
        )
    return boto3.Session(region_name=region), {}


def ensure_bucket(s3, bucket: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **kwargs)


def upload_zip(s3, bucket: str, name: str, zips: Path) -> str:
    path = zips / name / "bootstrap.zip"
    if not path.is_file():
        raise DeployError(f"{path} not found: the template wants code for '{name}'; run `just build`")
    data = path.read_bytes()
    key = f"{name}/{hashlib.sha256(data).hexdigest()}.zip"
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    return key


def template_parameters(body: str) -> list[str]:
    """Names of the parameters the template declares (YAML or JSON; CloudFormation's
    short-form tags such as !Ref are accepted and ignored)."""

    class TemplateLoader(yaml.SafeLoader):
        pass

    TemplateLoader.add_multi_constructor("!", lambda loader, suffix, node: None)
    document = yaml.load(body, Loader=TemplateLoader) or {}
    return list((document.get("Parameters") or {}).keys())


def stack_status(cfn, stack: str) -> str | None:
    try:
        return cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    except ClientError as e:
        if "does not exist" in str(e):
            return None
        raise


def failure_reasons(cfn, stack: str, since: float) -> str:
    try:
        events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
    except ClientError:
        return ""
    lines = []
    for event in reversed(events):
        if event["Timestamp"].timestamp() < since - 5:
            continue
        if "FAILED" in event.get("ResourceStatus", "") and event.get("ResourceStatusReason"):
            lines.append(
                f"  {event['LogicalResourceId']}: {event['ResourceStatus']}: {event['ResourceStatusReason']}"
            )
    return "\n".join(lines)


def wait(cfn, waiter_name: str, stack: str, since: float, timeout: float) -> None:
    delay = 1
    try:
        cfn.get_waiter(waiter_name).wait(
            StackName=stack, WaiterConfig={"Delay": delay, "MaxAttempts": int(timeout / delay)}
        )
    except WaiterError as e:
        status = stack_status(cfn, stack)
        raise DeployError(
            f"stack {stack} ended in {status}: {e}\n{failure_reasons(cfn, stack, since)}"
        ) from e


def deploy(
    template: Path | str = DEFAULT_TEMPLATE,
    stack: str = "sluice",
    *,
    parameters: dict[str, str] | None = None,
    endpoint_url: str | None = None,
    aws: bool = False,
    region: str | None = None,
    code_bucket: str | None = None,
    timeout: float = 600,
    log=print,
) -> dict[str, str]:
    """Deploys ``template`` as ``stack`` and returns its outputs (OutputKey -> OutputValue)."""
    region = region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
    endpoint_url = None if aws else (endpoint_url or localstack_endpoint())
    boto, client_kwargs = session(endpoint_url, region)
    cfn = boto.client("cloudformation", **client_kwargs)
    s3 = boto.client("s3", **client_kwargs)
    template = Path(template)
    body = template.read_text()

    if code_bucket is None:
        account = boto.client("sts", **client_kwargs).get_caller_identity()["Account"]
        code_bucket = f"sluice-code-{account}-{region}"
    ensure_bucket(s3, code_bucket, region)

    source = {"TemplateBody": body}
    if len(body.encode()) > MAX_TEMPLATE_BODY:
        key = f"templates/{stack}/{hashlib.sha256(body.encode()).hexdigest()}{template.suffix}"
        s3.put_object(Bucket=code_bucket, Key=key, Body=body.encode())
        source = {"TemplateURL": f"{s3.meta.endpoint_url}/{code_bucket}/{key}"}

    given = dict(parameters or {})
    values: dict[str, str] = {}
    for name in template_parameters(body):
        if name in given:
            values[name] = given.pop(name)
        elif name == "CodeBucket":
            values[name] = code_bucket
        elif name == CATALOG_SWITCH and endpoint_url:
            values[name] = "false"
        elif name.endswith(CODE_KEY_SUFFIX) and name != CODE_KEY_SUFFIX:
            values[name] = upload_zip(s3, code_bucket, bin_name(name), lambda_zip_dir())
    if given:
        raise DeployError(f"{template} declares no parameter(s) {', '.join(sorted(given))}")
    stack_parameters = [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]

    since = time.time()
    status = stack_status(cfn, stack)
    if status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED", "CREATE_FAILED"):
        log(f"deploy: stack {stack} is {status} (never created); deleting it first")
        cfn.delete_stack(StackName=stack)
        wait(cfn, "stack_delete_complete", stack, since, timeout)
        status = None
    if status is None:
        log(f"deploy: creating stack {stack} from {template}")
        cfn.create_stack(StackName=stack, Parameters=stack_parameters, Capabilities=CAPABILITIES, **source)
        wait(cfn, "stack_create_complete", stack, since, timeout)
    else:
        try:
            cfn.update_stack(
                StackName=stack, Parameters=stack_parameters, Capabilities=CAPABILITIES, **source
            )
        except ClientError as e:
            if "No updates are to be performed" not in str(e):
                raise
            log(f"deploy: stack {stack} is up to date")
        else:
            log(f"deploy: updating stack {stack} from {template}")
            wait(cfn, "stack_update_complete", stack, since, timeout)

    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    return outputs


def delete(
    stack: str,
    *,
    endpoint_url: str | None = None,
    aws: bool = False,
    region: str | None = None,
    timeout: float = 300,
) -> None:
    region = region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    boto, client_kwargs = session(None if aws else (endpoint_url or localstack_endpoint()), region)
    cfn = boto.client("cloudformation", **client_kwargs)
    since = time.time()
    cfn.delete_stack(StackName=stack)
    wait(cfn, "stack_delete_complete", stack, since, timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--template", default=str(DEFAULT_TEMPLATE), help="template file (default infra/pipeline.yaml)"
    )
    parser.add_argument("--stack", default="sluice", help="stack name (default sluice)")
    parser.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="template parameter"
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--endpoint-url", help=f"LocalStack endpoint (default {localstack_endpoint()})")
    target.add_argument("--aws", action="store_true", help="deploy to AWS with the default credential chain")
    parser.add_argument("--region", help="region (default $AWS_DEFAULT_REGION or us-east-1)")
    parser.add_argument("--code-bucket", help="bucket for the zips (default sluice-code-<account>-<region>)")
    parser.add_argument("--json", action="store_true", help="print the outputs as one JSON object")
    args = parser.parse_args(argv)

    parameters = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--param {item}: expected KEY=VALUE")
        parameters[key] = value
    try:
        outputs = deploy(
            args.template,
            args.stack,
            parameters=parameters,
            endpoint_url=args.endpoint_url,
            aws=args.aws,
            region=args.region,
            code_bucket=args.code_bucket,
            log=lambda message: print(message, file=sys.stderr),
        )
    except (DeployError, ClientError) as e:
        print(f"deploy: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(outputs, indent=2, sort_keys=True))
    else:
        print(f"Outputs of stack {args.stack}:")
        for key in sorted(outputs):
            print(f"  {key} = {outputs[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
