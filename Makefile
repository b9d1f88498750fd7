# The two commands: `make run` and `make test`. Everything they need is
# installed from this repository's own files (package.json, requirements-dev.txt,
# scripts/ensure-java.sh).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
VENV := .venv

.PHONY: help deps java chromium ts-test bench soak run demo test lint unit integration cfn-lint fmt schemathesis

# The example app's port (`make demo`); its stand-ins take the next two.
DEMO_PORT ?= 3001
DEMO := examples/nextjs
CLIENT := clients/typescript

help:
	@echo "make run   - serve the API on 127.0.0.1:3000 with DynamoDB Local (data in .data/)"
	@echo "make demo  - the Next.js example app on http://127.0.0.1:$(DEMO_PORT), against make run's API"
	@echo "make bench - cost, latency, throughput, sweep growth, cold start, size and memory into BENCHMARKS.md"
	@echo "make soak  - 10,000+ random operations against the model (MODEL_SEED to replay), into RELIABILITY.md"
	@echo "make test  - formatting, clippy, unit, integration and end-to-end tests, the README walk-through, cfn-lint"

deps: java chromium node_modules/.installed $(VENV)/.installed

java:
	@scripts/ensure-java.sh

chromium:
	@scripts/ensure-chromium.sh

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

# Local secrets that `make run` and `make demo` share, so what the demo's
# provider and Stripe stand-ins sign, the API accepts; and the demo's origin
# may read the API from the browser (CORS). Set any of them to override.
run demo: export CREDITS_WEBHOOK_SECRET_BFL ?= local-bfl-webhook-secret
run demo: export CREDITS_STRIPE_WEBHOOK_SECRET ?= whsec_local_stripe_webhook_secret
run: export CREDITS_STRIPE_LIVEMODE ?= false
run: export CREDITS_ALLOWED_ORIGINS ?= http://127.0.0.1:$(DEMO_PORT)

# Built as `make test` builds it (`--workspace`: the same features), so the
# two never rebuild the SDK for each other.
run: deps
	cargo build -q --workspace --bin credits
	$${CARGO_TARGET_DIR:-target}/debug/credits serve

# The example app, built, with its provider and Stripe stand-ins, against the
# API `make run` serves (start that first, in another terminal).
demo: node_modules/.installed $(DEMO)/.next/BUILD_ID
	cargo build -q --workspace --bin credits
	CREDITS_SERVER_TOKEN=$$($${CARGO_TARGET_DIR:-target}/debug/credits token --server) DEMO_PORT=$(DEMO_PORT) \
		node $(DEMO)/scripts/demo.mjs

$(CLIENT)/node_modules/.installed: $(CLIENT)/package.json $(CLIENT)/package-lock.json
	cd $(CLIENT) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(CLIENT)/dist/index.js: $(CLIENT)/node_modules/.installed $(wildcard $(CLIENT)/src/*.ts)
	cd $(CLIENT) && npm run -s build
	@touch $@

$(DEMO)/node_modules/.installed: $(DEMO)/package.json $(DEMO)/package-lock.json
	cd $(DEMO) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(DEMO)/.next/BUILD_ID: $(DEMO)/node_modules/.installed $(CLIENT)/dist/index.js $(DEMO)/next.config.mjs \
		$(shell find $(DEMO)/app $(DEMO)/lib -type f 2>/dev/null)
	cd $(DEMO) && NEXT_TELEMETRY_DISABLED=1 npx next build

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -q -- -D warnings

# `--workspace --bin credits`, not `-p credits-cli`: features resolve over the
# packages selected, so the CLI alone would build the SDK a second time with
# other features than `cargo test --workspace` does.
test: deps lint
	cargo build -q --workspace --bin credits
	CREDITS_BIN=$(CURDIR)/target/debug/credits cargo test --workspace
	scripts/check-links.py
	scripts/check-walkthrough.sh
	$(MAKE) --no-print-directory schemathesis
	$(MAKE) --no-print-directory ts-test
	$(MAKE) --no-print-directory cfn-lint

# The TypeScript client against the dev server; the Next.js example's
# checkout route against a stubbed Stripe API, then the example in Chromium,
# started as the README starts it (`make run`, `make demo`).
ts-test: $(CLIENT)/node_modules/.installed $(DEMO)/node_modules/.installed chromium
	cargo build -q --workspace --bin credits
	cd $(CLIENT) && CREDITS_BIN=$(CURDIR)/target/debug/credits npm test
	cd $(DEMO) && npm test && npm run -s test:browser

# Figures, not pass/fail: prints them and writes BENCHMARKS.md. The bench
# builds the release binaries itself; BENCH_STARTED lets it report the whole
# run's time, its own build included, and BENCH_BUILDS whether that began
# with no compiled profile (a fresh clone) or with cargo's caches.
bench: java node_modules/.installed
	BENCH_STARTED=$$(date +%s) BENCH_BUILDS=$$(t=$${CARGO_TARGET_DIR:-target}; test -d $$t/perf -o -d $$t/release && echo cached || echo fresh) \
		cargo run -q --profile perf -p credits-bench --bin bench

# Randomized operation sequences against the model, long: at least
# MODEL_OPS operations from a random seed (MODEL_SEED=<n> replays one);
# writes the seed, the counts and the result into RELIABILITY.md.
soak: java node_modules/.installed
	cargo build -q --workspace --bin credits
	MODEL_OPS=$${MODEL_OPS:-10000} CREDITS_BIN=$(CURDIR)/target/debug/credits \
		cargo test -q -p credits-tests --test model -- --ignored soak
	@awk '/^## /{p=/^## Randomized/} p' RELIABILITY.md

# Schema-driven fuzzing: schemathesis against openapi.yaml on a fresh dev
# server, bounded (a minute or two); see scripts/schemathesis.sh.
schemathesis: $(VENV)/.installed
	scripts/schemathesis.sh

cfn-lint: $(VENV)/.installed
	$(VENV)/bin/cfn-lint template.yaml
