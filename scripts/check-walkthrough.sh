#!/usr/bin/env bash
# Runs the README's curl walk-through, exactly as written, against a fresh
# dev server (`credits serve`, what `make run` runs) and checks its figures.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/devserver.sh
source scripts/devserver.sh
start_dev_server
eval "$(grep '^export ' "$work/server.log")"

# The shell block between the walkthrough markers, minus its fences.
sed -n '/<!-- walkthrough:start -->/,/<!-- walkthrough:end -->/p' README.md | sed '1,2d;$d' | sed '$d' >"$work/walkthrough.sh"
bash -euo pipefail "$work/walkthrough.sh" >"$work/out.txt"

fail=0
expect() {
  if ! grep -qF -- "$1" "$work/out.txt"; then
    echo "walk-through: expected to see $1" >&2
    fail=1
  fi
}
expect '"granted":50'
expect '"status":"confirmed"'
expect '"available":40,"reserved":0,"spent":10,"granted":50'
expect '"status":"released"'
expect '"type":"released"'
expect '"type":"grant"'
expect '"code":"insufficient_credits"'
expect 'Créditos insuficientes'
expect '"shortfall":110'
if [ $fail -ne 0 ]; then
  cat "$work/out.txt" >&2
  exit 1
fi
echo "README walk-through: OK"
