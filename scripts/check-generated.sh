#!/usr/bin/env bash
# Fails when src/gen is not what `buf generate` makes from proto/ today.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
npx buf lint
npx buf generate -o "$tmp"
if ! diff -r "$tmp/src/gen" src/gen; then
  echo "src/gen differs from proto/: run npm run generate and commit" >&2
  exit 1
fi
