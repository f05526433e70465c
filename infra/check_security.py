#!/usr/bin/env python3
"""Security rules for infra/pipeline.yaml and the repository, checked without AWS.

Run by `just lint` (after cfn-lint and checkov); exits non-zero naming every violation.

Template rules:
- every Lambda function has a role of its own, assumable only by lambda.amazonaws.com,
  with inline policies only (no managed policies);
- no Allow statement (role or resource policy) has a wildcard in an action, a NotAction
  or NotResource, or a `*` principal;
- `Resource: "*"` only for the actions in RESOURCE_STAR_ALLOWED (no resource-level
  permission exists for them);
- buckets: encryption, every public-access block on, a policy denying non-TLS requests;
  queues, topics, streams, tables: encryption at rest;
- every API Gateway method requires an API key.
The KMS key policy's account-root statement (`kms:*` on the key itself) is the default key
policy that lets IAM govern the key; it is the one wildcard allowed (KEY_POLICY_ROOT).

Repository rule: no file git knows (tracked or new, not ignored) contains something shaped
like a credential: AWS access key ids, AWS secret keys, private keys, common service tokens,
or a long literal value assigned to a key/token/secret/password field. LocalStack's dummy
credentials (`test`/`test`) and values saying EXAMPLE/placeholder are not credentials.

`--self-test` first proves each rule fires on a broken copy of the template.
"""

from __future__ import annotations

import argparse
import copy
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "infra" / "pipeline.yaml"

# (role logical id, action) -> why `Resource: "*"` is the only possible scope.
RESOURCE_STAR_ALLOWED = {
    ("CounterAggregatorRole", "dynamodb:ListStreams"): (
        "ListStreams has no resource-level permission; Lambda's DynamoDB stream mapping needs it"
    ),
    ("CounterReporterRole", "dynamodb:ListStreams"): (
        "ListStreams has no resource-level permission; Lambda's DynamoDB stream mapping needs it"
    ),
}

# Key policies: Resource "*" means "this key". The account-root statement delegates the key
# to IAM (AWS's default key policy); without it the key can become unmanageable.
KEY_POLICY_ROOT = "kms:*"


# --- loading ---------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation short-form tags into their long form."""


def _tag(loader: _Loader, suffix: str, node: yaml.Node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_Loader.add_multi_constructor("!", _tag)


def load_template(path: Path = TEMPLATE) -> dict:
    return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (SafeLoader subclass)


# --- template rules --------------------------------------------------------------------


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def resources_of(template: dict, kind: str) -> dict[str, dict]:
    return {
        name: res.get("Properties", {}) or {}
        for name, res in template.get("Resources", {}).items()
        if res.get("Type") == kind
    }


def getatt_target(value) -> str | None:
    """`!GetAtt X.Arn` -> "X"; anything else -> None."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target, attribute = value["Fn::GetAtt"]
        return target if attribute == "Arn" else None
    return None


def ref_target(value) -> str | None:
    return value.get("Ref") if isinstance(value, dict) else None


def is_star(value) -> bool:
    return value == "*"


def check_statements(where: str, statements, *, role: str | None = None, key_policy: bool = False) -> list[str]:
    problems = []
    for i, st in enumerate(as_list(statements)):
        label = f"{where} statement {st.get('Sid', i)}"
        if st.get("Effect") != "Allow":
            continue  # Deny statements may be as broad as they like.
        for field in ("NotAction", "NotResource", "NotPrincipal"):
            if field in st:
                problems.append(f"{label}: Allow with {field}")
        principal = st.get("Principal")
        if is_star(principal) or (isinstance(principal, dict) and is_star(principal.get("AWS"))):
            problems.append(f"{label}: Allow to every principal (*)")
        actions = as_list(st.get("Action", []))
        resources = as_list(st.get("Resource", []))
        root_statement = (
            key_policy
            and actions == [KEY_POLICY_ROOT]
            and isinstance(principal, dict)
            and "iam::${AWS::AccountId}:root" in str(principal.get("AWS"))
        )
        for action in actions:
            if not isinstance(action, str) or ("*" in action and not root_statement):
                problems.append(f"{label}: wildcard action {action!r}")
        if key_policy:
            continue  # a key policy's Resource "*" is the key itself
        if any(is_star(r) for r in resources):
            for action in actions:
                if role is None or (role, action) not in RESOURCE_STAR_ALLOWED:
                    problems.append(f'{label}: {action} on Resource "*" (not in RESOURCE_STAR_ALLOWED)')
    return problems


def check_roles(template: dict) -> list[str]:
    problems = []
    roles = resources_of(template, "AWS::IAM::Role")
    functions = resources_of(template, "AWS::Lambda::Function")
    owners: dict[str, str] = {}
    for fn, props in functions.items():
        role = getatt_target(props.get("Role"))
        if role not in roles:
            problems.append(f"{fn}: Role is not !GetAtt <a role in this template>.Arn")
            continue
        if role in owners:
            problems.append(f"{fn}: shares role {role} with {owners[role]} (one role per function)")
        owners[role] = fn
    for role, props in roles.items():
        if role not in owners:
            problems.append(f"{role}: role of no function (remove it, or teach this check what it is for)")
        trust = props.get("AssumeRolePolicyDocument", {}).get("Statement", [])
        services = [as_list(st.get("Principal", {}).get("Service")) for st in as_list(trust)]
        if services != [["lambda.amazonaws.com"]]:
            problems.append(f"{role}: trust policy must name lambda.amazonaws.com only, found {services}")
        if props.get("ManagedPolicyArns"):
            problems.append(f"{role}: managed policies grant more than the function calls; use inline statements")
        for policy in props.get("Policies", []):
            where = f"{role}/{policy.get('PolicyName')}"
            problems += check_statements(where, policy["PolicyDocument"].get("Statement", []), role=role)
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::User", "AWS::IAM::Group"):
        for name in resources_of(template, kind):
            problems.append(f"{name}: {kind} is not expected in this stack (roles carry inline policies)")
    return problems


def check_resource_policies(template: dict) -> list[str]:
    problems = []
    for kind in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
        for name, props in resources_of(template, kind).items():
            problems += check_statements(name, props.get("PolicyDocument", {}).get("Statement", []))
    for name, props in resources_of(template, "AWS::KMS::Key").items():
        problems += check_statements(name, props.get("KeyPolicy", {}).get("Statement", []), key_policy=True)
    return problems


def check_stores(template: dict) -> list[str]:
    problems = []
    policies = resources_of(template, "AWS::S3::BucketPolicy")
    tls_denied = set()
    for props in policies.values():
        for st in as_list(props.get("PolicyDocument", {}).get("Statement", [])):
            condition = st.get("Condition", {}).get("Bool", {})
            if st.get("Effect") == "Deny" and str(condition.get("aws:SecureTransport")).lower() == "false":
                tls_denied.add(ref_target(props.get("Bucket")))
    for name, props in resources_of(template, "AWS::S3::Bucket").items():
        rules = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        if not any(r.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules):
            problems.append(f"{name}: no default encryption")
        block = props.get("PublicAccessBlockConfiguration", {})
        flags = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
        if not all(block.get(flag) is True for flag in flags):
            problems.append(f"{name}: public access not fully blocked ({', '.join(flags)})")
        if name not in tls_denied:
            problems.append(f"{name}: no bucket policy denying aws:SecureTransport false")
    for name, props in resources_of(template, "AWS::SQS::Queue").items():
        if props.get("SqsManagedSseEnabled") is not True and not props.get("KmsMasterKeyId"):
            problems.append(f"{name}: not encrypted at rest (SqsManagedSseEnabled or KmsMasterKeyId)")
    for name, props in resources_of(template, "AWS::SNS::Topic").items():
        if not props.get("KmsMasterKeyId"):
            problems.append(f"{name}: not encrypted at rest (KmsMasterKeyId)")
    for name, props in resources_of(template, "AWS::Kinesis::Stream").items():
        if props.get("StreamEncryption", {}).get("EncryptionType") != "KMS":
            problems.append(f"{name}: not encrypted at rest (StreamEncryption KMS)")
    for name, props in resources_of(template, "AWS::DynamoDB::Table").items():
        if props.get("SSESpecification", {}).get("SSEEnabled") is not True:
            problems.append(f"{name}: SSESpecification.SSEEnabled is not true")
    for name, props in resources_of(template, "AWS::ApiGateway::Method").items():
        if props.get("ApiKeyRequired") is not True:
            problems.append(f"{name}: method does not require an API key")
    return problems


def check_template(template: dict) -> list[str]:
    return check_roles(template) + check_resource_policies(template) + check_stores(template)


# --- credentials -----------------------------------------------------------------------

PLACEHOLDER = re.compile(r"example|placeholder|not-a-real|dummy|fake|changeme|redacted|xxxx|<[^>]*>", re.I)
CREDENTIAL_PATTERNS = [
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA|AGPA|ANPA)[0-9A-Z]{16}\b")),
    (
        "AWS secret access key",
        re.compile(r"(?i)(?:aws_secret_access_key|secretaccesskey|secret_access_key)\W{1,6}([A-Za-z0-9/+=]{40})\b"),
    ),
    ("private key", re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----")),
    ("GitHub token", re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b|\bgithub_pat_[A-Za-z0-9_]{40,}")),
    ("Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("Stripe/OpenAI-style key", re.compile(r"\b(?:sk|rk)_live_[A-Za-z0-9]{16,}|\bsk-[A-Za-z0-9]{32,}")),
    (
        "literal secret value",
        re.compile(
            r"(?i)[\"']?(?:x-api-key|api[_-]?key|apikey|token|secret|password|passwd|auth)[\"']?\s*[:=]\s*"
            r"[\"']([A-Za-z0-9/+=_.~-]{20,})[\"']"
        ),
    ),
    ("bearer token", re.compile(r"(?i)\bBearer\s+([A-Za-z0-9._~+/-]{20,}=*)")),
]
SKIP_FILES = {"Cargo.lock"}


def looks_random(value: str) -> bool:
    """Mixed letters and digits, no placeholder wording: the shape of a generated secret."""
    return bool(re.search(r"[A-Za-z]", value) and re.search(r"[0-9]", value)) and not PLACEHOLDER.search(value)


def scan_text(text: str) -> list[tuple[int, str]]:
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for label, pattern in CREDENTIAL_PATTERNS:
            for m in pattern.finditer(line):
                value = m.group(m.lastindex or 0)
                if PLACEHOLDER.search(m.group(0)):
                    continue
                if label in ("literal secret value", "bearer token", "AWS secret access key") and not looks_random(
                    value
                ):
                    continue
                found.append((lineno, label))
    return found


def repository_files() -> list[Path]:
    out = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout
    return [REPO / p for p in out.decode().split("\0") if p and Path(p).name not in SKIP_FILES]


def check_credentials(files: list[Path]) -> list[str]:
    problems = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary (fuzz corpora, zips) or deleted in the work tree
        for lineno, label in scan_text(text):
            problems.append(f"{path.relative_to(REPO)}:{lineno}: looks like a {label}")
    return problems


# --- self-test -------------------------------------------------------------------------


def self_test(template: dict) -> list[str]:
    """Breaks a copy of the template once per rule; each break must be reported."""
    failures = []

    def expect(what: str, mutate) -> None:
        broken = copy.deepcopy(template)
        mutate(broken["Resources"])
        if not check_template(broken):
            failures.append(f"self-test: the check missed {what}")

    def first(resources, kind):
        return next(r for r in resources.values() if r["Type"] == kind)["Properties"]

    def statements(resources, role):
        return resources[role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]

    expect("a wildcard action", lambda r: statements(r, "IngestApiRole").append(
        {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"}))
    expect('a Resource "*"', lambda r: statements(r, "IngestApiRole").append(
        {"Effect": "Allow", "Action": "kinesis:PutRecords", "Resource": "*"}))
    expect("a shared role", lambda r: r["CrashRouterFunction"]["Properties"].update(
        Role={"Fn::GetAtt": ["IngestApiRole", "Arn"]}))
    expect("a managed policy", lambda r: r["IngestApiRole"]["Properties"].update(
        ManagedPolicyArns=["arn:aws:iam::aws:policy/AdministratorAccess"]))
    expect("an unencrypted queue", lambda r: first(r, "AWS::SQS::Queue").pop("SqsManagedSseEnabled"))
    expect("an unencrypted topic", lambda r: first(r, "AWS::SNS::Topic").pop("KmsMasterKeyId"))
    expect("an unencrypted stream", lambda r: first(r, "AWS::Kinesis::Stream").pop("StreamEncryption"))
    expect("an unencrypted table", lambda r: first(r, "AWS::DynamoDB::Table").pop("SSESpecification"))
    expect("an unencrypted bucket", lambda r: first(r, "AWS::S3::Bucket").pop("BucketEncryption"))
    expect("a public bucket", lambda r: first(r, "AWS::S3::Bucket")["PublicAccessBlockConfiguration"].update(
        BlockPublicPolicy=False))
    expect("a bucket without its TLS policy", lambda r: r.pop(
        next(n for n, v in r.items() if v["Type"] == "AWS::S3::BucketPolicy")))
    expect("a method without an API key", lambda r: first(r, "AWS::ApiGateway::Method").update(
        ApiKeyRequired=False))
    expect("an Allow to every principal", lambda r: first(r, "AWS::SQS::QueuePolicy")["PolicyDocument"][
        "Statement"][0].update(Principal="*"))

    fake_id = "AKIA" + "Q7RZ" * 4
    fake_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "9Q2ZT4LBVx"
    samples = {
        "an AWS access key id": f'key = "{fake_id}"',
        "an AWS secret key": f"aws_secret_access_key = {fake_key}",
        "an API key header": '"x-api-key": "' + "Xk2pQ9vR7tL4mN8sB3cD6fG1hJ5kA0zE9wY2uT7i" + '"',
        "a private key": "-----BEGIN RSA " + "PRIVATE KEY-----",
    }
    for what, line in samples.items():
        if not scan_text(line):
            failures.append(f"self-test: the credential scan missed {what}")
    for fine in ('aws_secret_access_key="test"', '"x-api-key": "EXAMPLE-api-key-not-a-real-credential"',
                 "AKIAIOSFODNN7EXAMPLE"):
        if scan_text(fine):
            failures.append(f"self-test: the credential scan flags {fine!r}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument("--self-test", action="store_true", help="prove each rule fires on a broken template")
    args = parser.parse_args(argv)

    template = load_template(args.template)
    problems = self_test(template) if args.self_test else []
    problems += check_template(template)
    problems += check_credentials(repository_files())
    for problem in problems:
        print(f"check_security: {problem}", file=sys.stderr)
    if problems:
        return 1
    roles = len(resources_of(template, "AWS::IAM::Role"))
    print(f"check_security: {args.template.name} ok ({roles} function roles); no credentials found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
