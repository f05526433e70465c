#!/usr/bin/env bash
# Fails when any built bootstrap needs a glibc symbol newer than the Lambda
# runtime provides (provided.al2023 ships glibc 2.34).
set -euo pipefail
dir="${1:?usage: check-glibc.sh <cargo-lambda output dir>}"
max="${GLIBC_MAX:-2.34}"
status=0
found=0
while IFS= read -r -d '' zip; do
  found=1
  tmp="$(mktemp -d)"
  unzip -q -o "$zip" bootstrap -d "$tmp"
  need="$(objdump -T "$tmp/bootstrap" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)"
  rm -rf "$tmp"
  if [ -n "$need" ] && [ "$(printf '%s\n%s\n' "$need" "$max" | sort -V | tail -1)" != "$max" ]; then
    echo "check-glibc: $zip needs GLIBC_$need > $max" >&2
    status=1
  else
    echo "check-glibc: $(basename "$(dirname "$zip")") ok (needs GLIBC_${need:-none} <= $max)"
  fi
done < <(find "$dir" -name bootstrap.zip -print0)
[ "$found" = 1 ] || { echo "check-glibc: no bootstrap.zip under $dir" >&2; exit 1; }
exit "$status"
