# dstore's entry points. `make help` lists them. Everything builds into one release target
# dir (tests, libdstore, the Python module and the dstore command share it), because builds
# are slow on small machines and building twice is the slowest thing we could do.

CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR
VENV   ?= $(CURDIR)/.venv
PYTHON := $(VENV)/bin/python

.PHONY: help demo test lint rust-test build python py-test bench header clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

demo: ## Run the demo: what dstore does, checked step by step, in plain words.
	cargo run --release -q -p dstore-cli -- demo

test: lint rust-test py-test ## Everything CI runs: lints, cargo tests, pytest (C, C++, Python).

lint: ## cargo fmt --check and clippy -D warnings on every crate.
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -q -- -D warnings

rust-test: ## cargo tests of the core, the C ABI and the command.
	cargo test --release --workspace --exclude dstore-py

build: ## Build libdstore (.so and .a) and the dstore command.
	cargo build --release -p dstore-ffi -p dstore-cli

$(VENV)/.ready: tests/requirements.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -r tests/requirements.txt
	touch $@

python: $(VENV)/.ready ## Build and install the Python module into .venv (pip install ./dstore-py).
	$(PYTHON) -m pip install -q ./dstore-py

py-test: build python ## pytest: the C and C++ examples and ABI tests, the Python module and example.
	$(PYTHON) -m pytest

bench: ## Throughput and memory of the local store against this machine's limits.
	cargo run --release -q -p dstore-cli -- bench

header: ## Regenerate include/dstore.h after changing the C ABI.
	DSTORE_BLESS=1 cargo test --release -p dstore-ffi --test header -q

clean: ## Remove build outputs and the venv.
	rm -rf $(CARGO_TARGET_DIR) $(VENV)
