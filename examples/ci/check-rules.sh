#!/usr/bin/env bash
# CI gate: fails when a committed rules file is not what the committed model compiles to.
# Usage: check-rules.sh MODEL RULES [HOST]
# No root needed: it only compiles and compares.
set -euo pipefail
model=$1 rules=$2 host=${3:-}
fresh=$(mktemp)
trap 'rm -f "$fresh"' EXIT
nftfwd build "$model" ${host:+--host "$host"} > "$fresh"
if ! diff -u --label "$rules (committed)" --label "$rules (from $model)" "$rules" "$fresh"; then
    echo "error: $rules is stale; run: nftfwd build $model ${host:+--host $host }> $rules" >&2
    exit 1
fi
echo "ok: $rules matches $model"
