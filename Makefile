# spotex developer tasks. `make help` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: help install demo test test-rs test-py check-install protos bench bench-rs
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

RUST_SOURCES := $(shell find rust_core/src rust_exchange/src rust_exchange/proto rust_replicated/src bindings/python/src -name '*.rs' -o -name '*.proto')

$(VENV)/.installed: pyproject.toml Cargo.toml Cargo.lock $(RUST_SOURCES) protos/spotex/v1/*.proto
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@echo "compiling the Rust engine into .venv (a few minutes the first time)..."
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed ## build the Rust extension (release) into .venv with the test tools

demo: install ## run a demo market on loopback: sellers, buyers, trades, GPU allocations
	$(VENV)/bin/spotex demo

test: install test-rs test-py check-install ## everything CI runs

test-rs: ## cargo tests of the engine and the exchange, and of the peer benchmark with a small run that must agree
	cargo test --release -p spotex-core -p spotex-exchange
	cargo run --release -q -p spotex-exchange --example recovery -- 20000
	cargo test --release --manifest-path bench/peers-rs/Cargo.toml
	cargo run --release -q --manifest-path bench/peers-rs/Cargo.toml -- \
		--orders 20000 --runs 1 --out "$$(mktemp -d)/peers_rs.json"

test-py: install ## pytest + hypothesis, stub check, lint, generated code up to date
	$(PY) scripts/gen_protos.py --check
	$(PY) -m mypy.stubtest spotex._core
	$(PY) -m mypy
	$(VENV)/bin/ruff check python tests bench scripts
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

check-install: install ## build a wheel as pip does, install it in a fresh venv, serve and trade
	PYTHON=$(PY) scripts/check_install.sh

protos: install ## regenerate python/spotex/_proto/ after changing protos/ (commit the result)
	$(PY) scripts/gen_protos.py

$(VENV)/.bench: $(VENV)/.installed
	$(PIP) install -q -e '.[test,bench]'
	touch $@

bench: $(VENV)/.bench ## every benchmark: peers, core, fragmentation, service load and floor, fan-out, durability, simulation, block auctions
	$(PY) bench/bench_peers.py
	$(PY) bench/bench_core.py
	$(PY) bench/fragmentation.py
	$(VENV)/bin/spotex bench
	$(PY) bench/bench_floor.py
	$(PY) bench/bench_fanout.py
	$(PY) bench/bench_durability.py
	cargo run --release -q -p spotex-exchange --example recovery -- 1000000
	cargo run --release -q -p spotex-exchange --example blocks -- 300
	$(VENV)/bin/spotex simulate
	$(PY) bench/bench_auction.py --big
	$(VENV)/bin/spotex simulate --hours 24 --auctions --runs 5
	$(PY) bench/bench_auction_load.py

bench-rs: ## criterion benchmark of the engine
	cargo bench -p spotex-core
