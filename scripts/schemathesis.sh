#!/usr/bin/env bash
# Schema-driven fuzzing: schemathesis generates requests from openapi.yaml
# and sends them to a fresh dev server (`credits serve`, what `make run`
# runs), checking that no answer is a 5xx and that every answer conforms to
# the spec (status code, content type, headers, body schema).
#
# Three runs, one per principal: every route but the admin ones with a
# user token (reads answer, every write must answer 403), then with the
# app's server token acting for a user (`Credits-User`), then every route
# with an admin token acting for a user (its stateful phase can place,
# confirm, extend and refund holds through the spec's links). Checks and their few
# documented exceptions are in scripts/schemathesis.toml.
#
# Webhooks carry no JWT and this server has no webhook secrets, so every
# webhook request must answer 403 `forbidden` (documented in the spec):
# unsigned input never reaches the ledger. Signed deliveries are covered by
# tests/tests/webhook.rs; the admin run leaves webhooks out.
#
# Bounded: SCHEMATHESIS_EXAMPLES cases per operation and phase (default 40),
# fixed seed (SCHEMATHESIS_SEED) so a failure can be replayed.
set -euo pipefail
cd "$(dirname "$0")/.."

examples=${SCHEMATHESIS_EXAMPLES:-40}
seed=${SCHEMATHESIS_SEED:-20261123}
reports=target/schemathesis
secret="schemathesis-$RANDOM-$RANDOM"

# shellcheck source=scripts/devserver.sh
source scripts/devserver.sh
# No webhook secrets: every webhook is refused, whatever it carries.
start_dev_server -u CREDITS_WEBHOOK_SECRET_GENERIC -u CREDITS_WEBHOOK_SECRET_BFL -u CREDITS_STRIPE_WEBHOOK_SECRET -u CREDITS_STRIPE_LIVEMODE -u DYNAMODB_ENDPOINT \
  CREDITS_DEV_JWT_SECRET="$secret"
api="http://127.0.0.1:$port"

user_token=$(CREDITS_DEV_JWT_SECRET="$secret" target/debug/credits token --user fuzz-user --ttl 3600)
server_token=$(CREDITS_DEV_JWT_SECRET="$secret" target/debug/credits token --server --ttl 3600)
admin_token=$(CREDITS_DEV_JWT_SECRET="$secret" target/debug/credits token --user fuzz-admin --admin --ttl 3600)

# Credits for the users the runs act for, so that generated reservations can succeed too.
for who in fuzz-user fuzz-server-user; do
  curl -sf -X POST "$api/v1/admin/users/$who/grants" \
    -H "Authorization: Bearer $admin_token" -H "Content-Type: application/json" \
    -H "Idempotency-Key: schemathesis-grant-$who" \
    -d '{"amount": 1000000000, "reason": "adjustment"}' >/dev/null
done

rm -rf "$reports"
mkdir -p "$reports"
# Hypothesis's own caches go with the reports, not into the working tree.
export HYPOTHESIS_STORAGE_DIRECTORY="$PWD/$reports/hypothesis"
# One worker: with two, Hypothesis parses lambdas' source in both threads at
# once and CPython 3.11's ast.parse is not thread-safe ("AST constructor
# recursion depth mismatch" ends the operation's test as an error).
run() {
  local name=$1 token=$2
  shift 2
  echo "== schemathesis: $name"
  .venv/bin/schemathesis --config-file scripts/schemathesis.toml run openapi.yaml --url "$api" \
    --header "Authorization: Bearer $token" \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$examples" --seed "$seed" --workers 1 --no-color \
    --report junit,har --report-dir "$reports" \
    --report-junit-path "$reports/$name.xml" --report-har-path "$reports/$name.har" \
    "$@"
}

status=0
run user "$user_token" --exclude-tag admin || status=1
# The server and the admin name the user they act for in every request.
run server "$server_token" --header "Credits-User: fuzz-server-user" --exclude-tag admin --exclude-tag webhooks || status=1
run admin "$admin_token" --header "Credits-User: fuzz-server-user" --exclude-tag webhooks || status=1

# The figures RELIABILITY.md quotes: requests sent and answers by status.
python3 - "$reports"/user.har "$reports"/server.har "$reports"/admin.har <<'EOF'
import collections, json, sys
total = collections.Counter()
for path in sys.argv[1:]:
    with open(path) as f:
        entries = json.load(f)["log"]["entries"]
    counts = collections.Counter(e["response"]["status"] for e in entries)
    total.update(counts)
    print(f"{path}: {sum(counts.values())} requests, by status {dict(sorted(counts.items()))}")
print(f"total: {sum(total.values())} requests, by status {dict(sorted(total.items()))}, "
      f"5xx: {sum(n for s, n in total.items() if s >= 500)}")
EOF

if [ $status -ne 0 ]; then
  echo "schemathesis: failures above (reports in $reports; server log follows)" >&2
  grep -v '"level":"INFO"\|"_aws"' "$work/server.log" | tail -n 30 >&2
  exit 1
fi
echo "schemathesis: OK"
