# sluice tasks. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]
set positional-arguments := false

# Everything cached outside the clone: cargo target dir, the Python venv
# (LocalStack, cargo-lambda + zig, just, pytest, cfn-lint).
cache := env("SLUICE_CACHE", home_directory() / ".cache/sluice")
venv := cache / "venv"
export SLUICE_CACHE := cache
export CARGO_TARGET_DIR := env("CARGO_TARGET_DIR", cache / "target")
export PATH := venv / "bin:" + env("PATH")

# List recipes
default:
    @just --list

# Install the tools: Python 3.13 venv with cargo-lambda (zig), LocalStack, pytest, cfn-lint
setup:
    bash infra/setup.sh

# Release zips of every function (cargo lambda, glibc 2.34 for provided.al2023), then check their glibc needs
build: setup
    cargo lambda build --release --output-format zip --workspace
    bash infra/check-glibc.sh "$CARGO_TARGET_DIR/lambda"

# fmt check + clippy (-D warnings)
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Unit tests (no network)
unit:
    cargo test --workspace

# Everything CI runs: lint, unit tests, release build, end-to-end tests against LocalStack
test: setup lint unit build e2e

# Start LocalStack in the background (127.0.0.1:4566, state and log in .localstack/); no-op if healthy
up: setup
    bash infra/localstack/up.sh

# Stop LocalStack and every process it started (DynamoDB Local, kinesis-mock, functions)
down:
    bash infra/localstack/down.sh

# Release zips + deploy a CloudFormation template to LocalStack, print its outputs
deploy-local template="infra/pipeline.yaml" stack="sluice": build up
    python infra/deploy.py --template "{{template}}" --stack "{{stack}}"

# End-to-end tests (pytest tests/e2e) against LocalStack; starts it if needed and then stops it again
e2e *args: build
    #!/usr/bin/env bash
    set -euo pipefail
    started=0
    if ! python infra/localstack/ctl.py healthy; then
        bash infra/localstack/up.sh
        started=1
    fi
    trap '[ "$started" = 0 ] || bash infra/localstack/down.sh' EXIT
    pytest tests/e2e -p no:cacheprovider -ra {{args}}

# Run a function locally under the cargo-lambda emulator (rebuilds on change)
watch fn: setup
    cargo lambda watch --package {{fn}}

# Invoke a function running under `just watch` with a sample event file (e.g. events/<fn>/x.json)
invoke fn event: setup
    cargo lambda invoke {{fn}} --data-file {{event}}

# Criterion benches of the core codecs
bench:
    cargo bench -p sluice-codec
