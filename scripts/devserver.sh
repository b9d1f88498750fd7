# Sourced by the scripts that test against a fresh dev server (`credits
# serve`, what `make run` runs). `start_dev_server [env args...]` builds it,
# starts it on a free port with its own data folder under `$work`, waits
# for its tokens, and stops it (and its DynamoDB Local) on exit. Sets
# `work`, `port` and `server`; the server's output is `$work/server.log`.
start_dev_server() {
  cargo build -q --workspace --bin credits
  work=$(mktemp -d)
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  env "$@" CREDITS_LISTEN="127.0.0.1:$port" target/debug/credits serve --data-dir "$work/data" >"$work/server.log" 2>&1 &
  server=$!
  # SIGINT is the server's clean stop: it also stops its DynamoDB Local.
  trap 'kill -INT $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
  for _ in $(seq 1 120); do
    grep -q '^export ADMIN_TOKEN=' "$work/server.log" && return 0
    kill -0 "$server" 2>/dev/null || break
    sleep 0.5
  done
  echo "dev server did not start" >&2
  cat "$work/server.log" >&2
  exit 1
}
