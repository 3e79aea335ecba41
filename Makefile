# dstore's entry points. `make help` lists them. Everything builds into one release target
# dir (tests, libdstore, the Python module and the dstore command share it), because builds
# are slow on small machines and building twice is the slowest thing we could do.

CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR
VENV   ?= $(CURDIR)/.venv
PYTHON := $(VENV)/bin/python

.PHONY: help demo test lint rust-test build install python py-test bench header fuzz clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

demo: ## Run the demo: what dstore does, checked step by step, in plain words.
	cargo run --release -q -p dstore-cli -- demo

test: lint rust-test py-test ## Everything CI runs: lints, cargo tests, pytest (C, C++, Python).

lint: ## cargo fmt --check, clippy -D warnings on every crate, and a build of the fuzz targets.
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -q -- -D warnings
	cargo build --release -q -p dstore-fuzz

rust-test: ## cargo tests of the core, the C ABI and the command.
	cargo test --release --workspace --exclude dstore-py

build: ## Build libdstore (.so and .a) and the dstore command.
	cargo build --release -p dstore-ffi -p dstore-cli

# Where `make install` puts things; DESTDIR stages them elsewhere (for packagers).
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
VERSION    := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
MAJOR      := $(firstword $(subst ., ,$(VERSION)))
RELEASE    := $(CARGO_TARGET_DIR)/release
SUBST      := sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(MAJOR)|g'

install: build ## Install libdstore (.so with SONAME, .a), headers, pkg-config, CMake files, dstore.
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(LIBDIR)/cmake/dstore \
		$(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR)
	install -m 755 $(RELEASE)/libdstore.so $(DESTDIR)$(LIBDIR)/libdstore.so.$(VERSION)
	ln -sf libdstore.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libdstore.so.$(MAJOR)
	ln -sf libdstore.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/libdstore.so
	install -m 644 $(RELEASE)/libdstore.a $(DESTDIR)$(LIBDIR)/libdstore.a
	strip --strip-debug $(DESTDIR)$(LIBDIR)/libdstore.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libdstore.a
	install -m 644 include/dstore.h include/dstore.hpp $(DESTDIR)$(INCLUDEDIR)/
	$(SUBST) dstore-ffi/pkg/dstore.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/dstore.pc
	$(SUBST) dstore-ffi/pkg/dstoreConfig.cmake.in > $(DESTDIR)$(LIBDIR)/cmake/dstore/dstoreConfig.cmake
	$(SUBST) dstore-ffi/pkg/dstoreConfigVersion.cmake.in \
		> $(DESTDIR)$(LIBDIR)/cmake/dstore/dstoreConfigVersion.cmake
	install -m 755 -s $(RELEASE)/dstore $(DESTDIR)$(BINDIR)/dstore

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

# Coverage instrumentation as cargo-fuzz applies it, with stable flags only; `--target` keeps
# it off build scripts and proc macros.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := message manifest handshake journal credential
HOST := $(shell rustc -vV | sed -n 's/^host: //p')
FUZZ_FLAGS := -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
	-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
	-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions

fuzz: ## Run each fuzz target for FUZZ_SECONDS (60) with coverage; corpora in fuzz/corpus.
	RUSTFLAGS="$(FUZZ_FLAGS)" cargo build --release -q -p dstore-fuzz --target $(HOST) \
		--target-dir $(CARGO_TARGET_DIR)/fuzz
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t fuzz/artifacts/$$t; \
		echo "fuzzing $$t for $(FUZZ_SECONDS) s"; \
		$(CARGO_TARGET_DIR)/fuzz/$(HOST)/release/$$t -max_total_time=$(FUZZ_SECONDS) \
			-artifact_prefix=fuzz/artifacts/$$t/ -print_final_stats=1 fuzz/corpus/$$t \
			2>fuzz/artifacts/$$t.log || { tail -30 fuzz/artifacts/$$t.log; exit 1; }; \
		grep -E '^stat::number_of_executed_units|^#[0-9]+ *DONE' fuzz/artifacts/$$t.log | tail -2; \
	done

header: ## Regenerate include/dstore.h after changing the C ABI.
	DSTORE_BLESS=1 cargo test --release -p dstore-ffi --test header -q

clean: ## Remove build outputs and the venv.
	rm -rf $(CARGO_TARGET_DIR) $(VENV)
