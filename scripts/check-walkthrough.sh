#!/usr/bin/env bash
# Runs the docs' curl blocks, exactly as written, against `make run` itself,
# started as the README says, and checks their figures: the walk-through
# and the credit lots example of docs/WALKTHROUGH.md, then the events
# example of docs/EVENTS.md. Then stops it as Ctrl-C does (SIGINT to its
# process group), checks that its DynamoDB Local is gone too, starts `make
# run` again on the same data and checks that the walk-through's grant is
# still there.
#
# The data folder is given relative (`CREDITS_DATA_DIR`, as `.data` is by
# default), and is one of this check's own: a developer's `.data` is never
# touched.
set -euo pipefail
cd "$(dirname "$0")/.."

data=target/walkthrough-data
rm -rf "$data"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server=""
log=""

# The running `make run`'s process group (its leader's pid), if any.
group_alive() { [ -n "$server" ] && kill -0 -- "-$server" 2>/dev/null; }

# DynamoDB Local processes (Java and its watcher shell) on this check's data.
java_left() {
  local dir
  dir=$(cd "$data" 2>/dev/null && pwd -P) || return 1
  ps -eo pid=,args= | grep -F DynamoDBLocal.jar | grep -F -- "$dir"
}

fail() {
  echo "walk-through: $*" >&2
  if [ -n "$log" ] && [ -f "$log" ]; then
    echo "--- output of make run ($log):" >&2
    cat "$log" >&2
    echo "---" >&2
  fi
  exit 1
}

# The shell block between `<!-- $1:start -->` and `<!-- $1:end -->` of the
# doc $2, minus its fences, into $3; a block that is not there fails.
block() {
  sed -n "/<!-- $1:start -->/,/<!-- $1:end -->/p" "$2" | sed '1,2d;$d' | sed '$d' >"$3"
  grep -q '[^[:space:]]' "$3" || fail "no $1 block in $2"
}

# Runs the block $1 of the doc $2, as written, its output into out.txt;
# $3 names it in messages. Then `expect` what it must show, and `verdict`.
run_block() {
  block "$1" "$2" "$work/$1.sh"
  bash -euo pipefail "$work/$1.sh" >"$work/out.txt" || {
    cat "$work/out.txt" >&2
    fail "$3 failed"
  }
}

bad=0
expect() {
  if ! grep -qF -- "$1" "$work/out.txt"; then
    echo "walk-through: expected to see $1" >&2
    bad=1
  fi
}

# Fails naming $1 if an `expect` missed, else says $1 ($2) is OK ($3: what else).
verdict() {
  if [ $bad -ne 0 ]; then
    cat "$work/out.txt" >&2
    fail "$1: the output is wrong"
  fi
  echo "$1 ($2): OK${3:+ ($3)}"
}

cleanup() {
  if group_alive; then
    kill -INT -- "-$server" 2>/dev/null || true
    for _ in $(seq 1 40); do
      group_alive || break
      sleep 0.25
    done
    kill -KILL -- "-$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# `make run` in a process group of its own (job control on for the `&`, so
# SIGINT is not ignored in it, as in a terminal), on DynamoDB Local whatever
# the caller's environment; waits for its exports.
start_server() {
  log="$work/run$1.log"
  set -m
  env -u DYNAMODB_ENDPOINT CREDITS_LISTEN="127.0.0.1:$port" CREDITS_DATA_DIR="$data" make run </dev/null >"$log" 2>&1 &
  server=$!
  set +m
  # Ready once the tokens are printed: API, USER_TOKEN and ADMIN_TOKEN, and
  # a line after the last export (the server prints one), or 2 s more.
  local seen=0
  for _ in $(seq 1 1800); do
    if grep -q '^export API=' "$log" && grep -q '^export USER_TOKEN=' "$log" && grep -q '^export ADMIN_TOKEN=' "$log"; then
      awk '/^export /{last=NR} END{exit !(last && NR > last)}' "$log" && return 0
      seen=$((seen + 1))
      [ "$seen" -ge 4 ] && return 0
    fi
    kill -0 "$server" 2>/dev/null || fail "make run (run $1) exited before printing its tokens"
    sleep 0.5
  done
  fail "make run (run $1) printed no tokens within 15 minutes"
}

# Ctrl-C: SIGINT to the whole group; everything in it must end, Java too.
stop_server() {
  kill -INT -- "-$server" 2>/dev/null || fail "make run (run $1) was already gone before Ctrl-C"
  local status=0
  wait "$server" 2>/dev/null || status=$?
  for _ in $(seq 1 120); do
    group_alive || java_left >/dev/null || break
    sleep 0.25
  done
  if group_alive; then
    ps -o pid=,args= -g "$server" >&2 || true
    fail "processes of make run (run $1) still running 30 s after SIGINT"
  fi
  if java_left >&2; then
    fail "DynamoDB Local of make run (run $1) still running after SIGINT"
  fi
  [ -f "$data/shared-local-instance.db" ] || fail "make run (run $1) kept no data in $data"
  echo "make run (run $1): stopped by SIGINT (make exited $status), no DynamoDB Local left"
  server=""
}

# Run 1: the walk-through, on a fresh data folder.
start_server 1
eval "$(grep '^export ' "$log")"

run_block walkthrough docs/WALKTHROUGH.md "the walk-through"
expect '"granted":50'
expect '"status":"confirmed"'
expect '"available":40,"reserved":0,"spent":10,"expired":0,"debited":0,"granted":50'
expect '"status":"released"'
expect '"type":"released"'
expect '"type":"grant"'
expect '"code":"insufficient_credits"'
expect 'Créditos insuficientes'
expect '"shortfall":110'
# The user's own token was refused the confirm; the grant says who and why.
expect '"code":"forbidden"'
expect 'this token can only read'
expect '"reason":"purchase","actor":"demo-admin"'
# The server's confirm naming nobody was refused, naming the header.
expect '"field":"Credits-User"'
verdict walk-through docs/WALKTHROUGH.md

# Several captures on one hold and an extend, as written, continuing from
# the walk-through (demo-user: 40 available before, 30 after).
run_block captures docs/WALKTHROUGH.md "the captures example"
# Each image charged once: 5 after the first, 10 after the second; the
# final confirm of 0 more returns the rest.
expect '"capturedUnits":1,"capturedAmount":5'
expect '"capturedUnits":2,"capturedAmount":10'
expect '"status":"confirmed"'
expect '"releasedAmount":10'
balance=$(curl -s "$API/v1/balance" -H "Authorization: Bearer $USER_TOKEN")
case "$balance" in
  *'"available":30,"reserved":0,"spent":20,'*) ;;
  *) echo "$balance" >&2; bad=1 ;;
esac
verdict "captures example" docs/WALKTHROUGH.md

# Auto-recharge's settings, as written: on, read by the user, off.
run_block recharge docs/PURCHASES.md "the auto-recharge example"
expect '"enabled":true,"pack":"starter","threshold":20,"monthlyLimit":3,"rechargesThisMonth":0,"cardSaved":false'
expect '"enabled":false,"pack":null,"threshold":20,"monthlyLimit":null'
verdict "auto-recharge example" docs/PURCHASES.md

# The credit lots example, as written, on the same server.
run_block lots docs/WALKTHROUGH.md "the credit lots example"
expect '"available":110,"reserved":0,"spent":0,"expired":0,"debited":0,"granted":110'
expect '"nextExpiry":{"amount":10,'
expect '"lots":[{"priority":10,'
expect '"amount":10},{"priority":50,"expiresAt":null,"amount":10}]'
expect '"available":90,"reserved":20'
expect '"status":"released"'
expect '"debitId"'
expect '"amount":30,"requested":30'
expect '"plan":{"plan":"pro","allowance":100,"period":"month","rollover":20'
expect '"available":180,'
verdict "credit lots example" docs/WALKTHROUGH.md

# The events example, as written, with a receiver listening where it says
# (HOOK_URL): every delivery must arrive, signed as the Standard Webhooks
# reference library expects.
hook_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 scripts/webhook-receiver.py "$hook_port" "$work/hooks.jsonl" &
receiver=$!
trap 'kill $receiver 2>/dev/null || true; cleanup' EXIT
# Listening before the first delivery is attempted: a first attempt that
# finds no receiver is retried only at the dev server's next sweep (60 s),
# after this check has stopped waiting.
for _ in $(seq 1 100); do
  python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$hook_port" 2>/dev/null && break
  kill -0 "$receiver" 2>/dev/null || fail "the webhook receiver exited"
  sleep 0.1
done
export HOOK_URL="http://127.0.0.1:$hook_port/webhooks/credits"
run_block events docs/EVENTS.md "the events example"
expect '"secret":"whsec_'
expect '"lowBalanceThreshold":20'
for _ in $(seq 1 60); do
  [ "$(wc -l <"$work/hooks.jsonl" 2>/dev/null || echo 0)" -ge 4 ] && break
  sleep 0.5
done
secret=$(grep -o '"secret":"[^"]*"' "$work/out.txt" | cut -d'"' -f4)
python3 -c 'import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line); d["secret"] = sys.argv[2]; print(json.dumps(d))' "$work/hooks.jsonl" "$secret" >"$work/signed.jsonl" \
  || fail "the receiver got no deliveries"
.venv/bin/python scripts/verify-webhooks.py <"$work/signed.jsonl" >"$work/ids.txt" || fail "a delivery failed the reference library's verification"
types=$(python3 -c 'import json, sys
print(" ".join(sorted(json.loads(json.loads(l)["body"])["type"] for l in open(sys.argv[1]))))' "$work/hooks.jsonl")
# Deliveries of one stream read are attempted at once: in any order.
[ "$types" = "balance.low balance.recovered grant.created hold.released" ] \
  || fail "the receiver got [$types], expected balance.low balance.recovered grant.created hold.released"
[ "$(sort -u "$work/ids.txt" | wc -l)" -eq 4 ] || fail "a webhook-id was delivered twice: $(cat "$work/ids.txt")"
kill $receiver 2>/dev/null || true
verdict "events example" docs/EVENTS.md "4 deliveries, verified"
stop_server 1

# Run 2: the same data folder; the walk-through's grant is still there.
unset API USER_TOKEN ADMIN_TOKEN
start_server 2
eval "$(grep '^export ' "$log")"
balance=$(curl -s "$API/v1/admin/users/demo-user/balance" -H "Authorization: Bearer $ADMIN_TOKEN")
case "$balance" in
  *'"available":30,"reserved":0,"spent":20,"expired":0,"debited":0,"granted":50'*) ;;
  *) fail "after a restart of make run, demo-user's balance is $balance (expected granted 50, spent 20)" ;;
esac
echo "make run again on $data: demo-user's balance kept ($balance)"
stop_server 2
echo "make run: OK"
