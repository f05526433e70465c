# sluice tasks. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]
set positional-arguments := false

# Everything cached outside the clone: cargo target dir, the Python venv
# (LocalStack, cargo-lambda + zig, just, pytest, cfn-lint).
cache := env("SLUICE_CACHE", home_directory() / ".cache/sluice")
venv := cache / "venv"
# checkov has a venv of its own (infra/requirements-checkov.txt): its pins would break LocalStack's.
checkov := cache / "checkov-venv/bin/checkov"
export SLUICE_CACHE := cache
export CARGO_TARGET_DIR := env("CARGO_TARGET_DIR", cache / "target")
export PATH := venv / "bin:" + env("PATH")

# The functions' release zips: every binary of the workspace except the tools
# (the demo driver, the bench runner and the operator CLI are not Lambdas).
lambda_build := "cargo lambda build --release --output-format zip --workspace --exclude sluice-demo --exclude sluice-bench --exclude sluice-cli"

# List recipes
default:
    @just --list

# Install the tools: Python 3.13 venv with cargo-lambda (zig), LocalStack, pytest, cfn-lint
setup:
    bash infra/setup.sh

# Release zips of every function (cargo lambda, glibc 2.34 for provided.al2023), then check their glibc needs
build: setup
    {{lambda_build}}
    bash infra/check-glibc.sh "$CARGO_TARGET_DIR/lambda"

# fmt check + clippy (-D warnings) + cfn-lint, checkov and the IAM/encryption/credential rules (infra/check_security.py) on infra/pipeline.yaml
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cfn-lint infra/pipeline.yaml
    @[ -x "{{checkov}}" ] || { echo "lint: {{checkov}} missing; run 'just setup'" >&2; exit 1; }
    BC_SKIP_MAPPING=TRUE "{{checkov}}" -f infra/pipeline.yaml --framework cloudformation --quiet --compact --skip-download
    python infra/check_security.py --self-test
    python infra/glue_schema.py --self-test && python infra/glue_schema.py --check infra/pipeline.yaml
    ruff check --select F --no-cache --quiet tests infra tools

# Unit tests (no network)
unit:
    cargo test --workspace

# Everything CI runs: lint, unit tests, a 10 s fuzz run per target, release build, end-to-end tests against LocalStack
test: setup lint unit (fuzz "10") build e2e

# Run every fuzz target (fuzz/, cargo fuzz on stable) for `seconds` each; prints a summary per target
fuzz seconds="60": setup
    bash fuzz/run.sh {{seconds}}

# Start LocalStack in the background (127.0.0.1:4566, state and log in .localstack/); no-op if healthy
up: setup
    bash infra/localstack/up.sh

# Stop LocalStack and every process it started (DynamoDB Local, kinesis-mock, functions)
down:
    bash infra/localstack/down.sh

# Release zips + deploy a CloudFormation template to LocalStack, print its outputs
deploy-local template="infra/pipeline.yaml" stack="sluice": build up
    python infra/deploy.py --template "{{template}}" --stack "{{stack}}"

# The whole pipeline on LocalStack in one command: setup, release zips, LocalStack, stack `sluice`, scenario, summary [keep=true] [scale=small]
demo *args:
    #!/usr/bin/env bash
    set -euo pipefail
    keep=false scale=full
    for arg in {{args}}; do
        case "$arg" in
            keep|--keep|keep=true) keep=true ;;
            keep=false) keep=false ;;
            scale=*) scale="${arg#scale=}" ;;
            *) echo "demo: unknown argument '$arg' (keep=true, scale=full|small)" >&2; exit 2 ;;
        esac
    done
    logs="$SLUICE_CACHE/demo"
    mkdir -p "$logs"
    step() {  # step <name> <command...>: runs it, output shown and kept in $logs/<name>.log
        local name="$1"; shift
        echo "==> $name (log: $logs/$name.log)"
        local t0=$SECONDS
        if ! "$@" 2>&1 | tee "$logs/$name.log"; then
            echo "demo: step '$name' failed; its log: $logs/$name.log" >&2
            exit 1
        fi
        echo "    $name: $((SECONDS - t0)) s"
    }
    step setup bash infra/setup.sh
    step build bash -c '{{lambda_build}} \
        && bash infra/check-glibc.sh "$CARGO_TARGET_DIR/lambda" && cargo build -p sluice-demo'
    started=0
    if ! python infra/localstack/ctl.py healthy; then
        step localstack bash infra/localstack/up.sh
        started=1
    fi
    if [ "$started" = 1 ] && [ "$keep" != true ]; then
        trap 'echo "==> stopping LocalStack (the demo started it; keep=true leaves it running)"; bash infra/localstack/down.sh >/dev/null 2>&1 || true' EXIT
    fi
    # counter-reporter alerts when a crashes_* total passes 100,000 (the summary expects one alert for each).
    limits='[{"counter":"crashes_*","max":100000}]'
    step deploy bash -c 'python infra/deploy.py --stack sluice --param "CounterLimits=$1" --json > "$0"' "$logs/outputs.json" "$limits"
    step scenario "$CARGO_TARGET_DIR/debug/sluice-demo" --outputs "$logs/outputs.json" \
        --scale "$scale" --json "$logs/summary.json"
    step query python tools/query/sluice_query.py --outputs "$logs/outputs.json"
    echo "stack outputs: $logs/outputs.json, summary: $logs/summary.json"
    if [ "$started" = 0 ] || [ "$keep" = true ]; then
        echo "LocalStack keeps running: explore with 'aws --endpoint-url http://localhost:4566 ...' (README: Demo); 'just down' stops it"
    fi

# Release zips to a code bucket and infra/pipeline.yaml to real AWS (`aws cloudformation deploy`, default credential chain): [stack=NAME] [Parameter=Value ...]
deploy *args: build
    #!/usr/bin/env bash
    set -euo pipefail
    unset AWS_ENDPOINT_URL  # real AWS, never an emulator
    stack=sluice overrides=()
    for arg in {{args}}; do
        case "$arg" in
            stack=*) stack="${arg#stack=}" ;;
            *=*) overrides+=("$arg") ;;
            *) echo "deploy: '$arg' is not stack=NAME or Parameter=Value" >&2; exit 2 ;;
        esac
    done
    region="${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region || true)}}"
    region="${region:-us-east-1}"
    account="$(aws sts get-caller-identity --query Account --output text)"
    bucket="${SLUICE_CODE_BUCKET:-sluice-code-$account-$region}"
    echo "==> code bucket s3://$bucket ($region, account $account)"
    if ! aws s3api head-bucket --bucket "$bucket" --region "$region" 2>/dev/null; then
        if [ "$region" = us-east-1 ]; then
            aws s3api create-bucket --bucket "$bucket" --region "$region" >/dev/null
        else
            aws s3api create-bucket --bucket "$bucket" --region "$region" \
                --create-bucket-configuration "LocationConstraint=$region" >/dev/null
        fi
        aws s3api put-public-access-block --bucket "$bucket" --region "$region" --public-access-block-configuration \
            BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
    fi
    # <BinNameInPascalCase>CodeKey parameter -> <bin-name>/<sha256>.zip: unchanged code, unchanged key, no update.
    params=("CodeBucket=$bucket")
    for param in $(grep -oE '^  [A-Za-z0-9]+CodeKey:' infra/pipeline.yaml | tr -d ' :'); do
        name="$(echo "${param%CodeKey}" | sed -E 's/([a-z0-9])([A-Z])/\1-\2/g' | tr 'A-Z' 'a-z')"
        zip="$CARGO_TARGET_DIR/lambda/$name/bootstrap.zip"
        key="$name/$(sha256sum "$zip" | cut -d' ' -f1).zip"
        if ! aws s3api head-object --bucket "$bucket" --key "$key" --region "$region" >/dev/null 2>&1; then
            echo "    upload $zip -> s3://$bucket/$key"
            aws s3 cp --only-show-errors "$zip" "s3://$bucket/$key" --region "$region"
        fi
        params+=("$param=$key")
    done
    echo "==> deploy stack $stack"
    aws cloudformation deploy --region "$region" --stack-name "$stack" \
        --template-file infra/pipeline.yaml --s3-bucket "$bucket" --s3-prefix "templates/$stack" \
        --capabilities CAPABILITY_IAM CAPABILITY_NAMED_IAM --no-fail-on-empty-changeset \
        --parameter-overrides "${params[@]}" "${overrides[@]}"
    aws cloudformation describe-stacks --region "$region" --stack-name "$stack" \
        --query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output table

# End-to-end tests (pytest tests/e2e) against LocalStack; starts it if needed and then stops it again
[positional-arguments]
e2e *args: build
    #!/usr/bin/env bash
    set -euo pipefail
    started=0
    if ! python infra/localstack/ctl.py healthy; then
        bash infra/localstack/up.sh
        started=1
    fi
    trap '[ "$started" = 0 ] || bash infra/localstack/down.sh' EXIT
    pytest tests/e2e -p no:cacheprovider -ra --durations=15 "$@"

# Only the fault-injection tests (tests/e2e/test_faults_*.py), then their measured rows into docs/RELIABILITY.md
[positional-arguments]
reliability *args:
    just e2e -k faults "$@"
    python tests/e2e/reliability_table.py

# Load test on LocalStack: ingest -> stream -> archive at a bounded rate, then every event counted in the archive (docs/SCALE.md): --rate N --seconds S [--per-request B --clients C --keys spread|hot --json FILE]; stack parameters in $SLUICE_LOAD_PARAMS (e.g. "StreamCapacity=1")
[positional-arguments]
load *args: build up
    #!/usr/bin/env bash
    set -euo pipefail
    params=()
    for p in ${SLUICE_LOAD_PARAMS:-}; do params+=(--param "$p"); done
    mkdir -p "$SLUICE_CACHE/load"
    python infra/deploy.py --stack sluice-load "${params[@]}" --json > "$SLUICE_CACHE/load/outputs.json"
    python tools/load/sluice_load.py --outputs "$SLUICE_CACHE/load/outputs.json" "$@"

# The operator's command line against a deployed stack (README, Operating sluice): status, redrive, backfill, replay
[positional-arguments]
sluice *args:
    cargo run -q -p sluice-cli -- "$@"

# Run a function locally under the cargo-lambda emulator (rebuilds on change)
watch fn: setup
    cargo lambda watch --package {{fn}}

# Invoke a function running under `just watch` with a sample event file (e.g. events/<fn>/x.json)
invoke fn event: setup
    cargo lambda invoke {{fn}} --data-file {{event}}

# sluice vs the seeds' Python, codec limits, cold start, memory, zip sizes, cost: one table, written to docs/PERFORMANCE.md (~10 min on 2 cores)
bench *args: setup
    python tools/sluice-bench/run.py {{args}}

# Criterion benches of the codecs and the functions' pure paths (several minutes on 2 cores)
bench-criterion:
    cargo bench -p sluice-codec -p avro-converter -p kinesis-archiver -p counter-mapper -p counter-aggregator -p crash-router -p ingest-api
