#!/usr/bin/env bash
# Runs the README's curl walk-through, exactly as written, against a fresh
# dev server (`credits serve`, what `make run` runs) and checks its figures.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -q -p credits-cli --bin credits
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
CREDITS_LISTEN="127.0.0.1:$port" target/debug/credits serve --data-dir "$work/data" >"$work/server.log" 2>&1 &
server=$!
trap 'kill -INT $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT

for _ in $(seq 1 120); do
  grep -q '^export ADMIN_TOKEN=' "$work/server.log" && break
  kill -0 $server 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.5
done
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
