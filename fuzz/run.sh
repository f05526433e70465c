#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time and prints one summary line per target.
#
#   bash fuzz/run.sh [seconds-per-target=60] [target ...]      (or: just fuzz [seconds])
#
# Stable toolchain: libFuzzer with coverage instrumentation only (`--sanitizer none`; the
# sanitizers need nightly). Rust's own checks stay on: panics, overflow checks and debug
# assertions are crashes. Hostile sizes are crashes too: one allocation over 64 MiB (the
# targets' allocator, fuzz/src/lib.rs), a process over RSS_LIMIT_MB, or one input taking
# more than INPUT_TIMEOUT seconds.
#
# Inputs the fuzzer discovers go to $SLUICE_CACHE/fuzz-corpus/<target>/ (kept between runs);
# the committed seeds in fuzz/corpus/<target>/ are only read. A crasher is saved as
# fuzz/artifacts/<target>/crash-*; `cargo fuzz run --sanitizer none <target> <file>`
# replays it. Turn it into a #[test] in the crate that owns the parser, then fix.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
shift || true
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
export PATH="$cache/cargo-tools/bin:$PATH"
# The instrumented build has a target dir of its own: it never invalidates the workspace's.
export CARGO_TARGET_DIR="$cache/fuzz-target"
export CARGO_TERM_COLOR=never
RSS_LIMIT_MB="${RSS_LIMIT_MB:-1024}"
INPUT_TIMEOUT="${INPUT_TIMEOUT:-10}"

if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz: cargo-fuzz not found in $cache/cargo-tools/bin: run 'just setup' (infra/setup.sh)" >&2
  exit 1
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

t0=$SECONDS
echo "fuzz: building the targets (cargo fuzz build; log: $cache/fuzz-build.log)"
if ! cargo fuzz build --sanitizer none >"$cache/fuzz-build.log" 2>&1; then
  tail -n 40 "$cache/fuzz-build.log" >&2
  exit 1
fi
echo "fuzz: built ${#targets[@]} targets in $((SECONDS - t0)) s; running each for ${seconds} s"

logs="$cache/fuzz-logs"
mkdir -p "$logs"
failed=()
printf '%-14s %8s %12s %10s %8s %8s  %s\n' target seconds execs execs/s corpus rss_mb result
for target in "${targets[@]}"; do
  work="$cache/fuzz-corpus/$target"
  mkdir -p "$work" "artifacts/$target"
  log="$logs/$target.log"
  start=$SECONDS
  if cargo fuzz run --sanitizer none "$target" "$work" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout="$INPUT_TIMEOUT" \
      -rss_limit_mb="$RSS_LIMIT_MB" \
      -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (log: $log)"
    failed+=("$target")
  fi
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  printf '%-14s %8s %12s %10s %8s %8s  %s\n' "$target" "$((SECONDS - start))" \
    "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" \
    "$(find "$work" -type f | wc -l)" "$(stat peak_rss_mb)" "$result"
done

if [ "${#failed[@]}" -gt 0 ]; then
  for target in "${failed[@]}"; do
    echo "--- $target: $(grep -m1 -E 'panicked at|ERROR: libFuzzer' "$logs/$target.log" || true)" >&2
    grep -A2 -m1 'panicked at' "$logs/$target.log" | tail -n +2 >&2 || true
    grep -E 'Test unit written to' "$logs/$target.log" >&2 || true
  done
  echo "fuzz: ${#failed[@]} target(s) found a crasher: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash in $((SECONDS - t0)) s"
