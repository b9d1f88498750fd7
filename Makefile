# The two commands: `make run` and `make test`. Everything they need is
# installed from this repository's own files (package.json, requirements-dev.txt,
# scripts/ensure-java.sh).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
VENV := .venv

.PHONY: help deps java chromium ts-test bench soak run test lint unit integration cfn-lint fmt schemathesis

help:
	@echo "make run   - serve the API on 127.0.0.1:3000 with DynamoDB Local (data in .data/)"
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

# Built as `make test` builds it (`--workspace`: the same features), so the
# two never rebuild the SDK for each other.
run: deps
	cargo build -q --workspace --bin credits
	$${CARGO_TARGET_DIR:-target}/debug/credits serve

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
	scripts/check-walkthrough.sh
	$(MAKE) --no-print-directory schemathesis
	$(MAKE) --no-print-directory ts-test
	$(MAKE) --no-print-directory cfn-lint

# The TypeScript client against the dev server; the Next.js example type-checked, its checkout route tested against a stubbed Stripe API.
ts-test:
	cargo build -q --workspace --bin credits
	cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error && CREDITS_BIN=$(CURDIR)/target/debug/credits npm test
	cd examples/nextjs && npm ci --no-audit --no-fund --loglevel=error && npm run typecheck && npm test

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
