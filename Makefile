# Everything a fresh clone needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KERNEL_DIR := pow_mcp/pow/kernels/c
KERNEL_C := $(wildcard $(KERNEL_DIR)/*.c $(KERNEL_DIR)/*.h)
KERNEL_CORE := $(KERNEL_DIR)/sha256_search.c $(KERNEL_DIR)/kat.c

# Python's bytecode cache on, whatever the shell says (some sandboxes set
# PYTHONDONTWRITEBYTECODE): the suite starts hundreds of servers and `pow-mcp` commands, and
# without the cache each compiles the package again (a quarter of a second per server).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test suite lint docs reference bench bench-views ui ui-check chaos test-long test-lowest \
	test-portable test-arm64 test-sanitize test-wheel check-wheels clean

# Stamps re-run the install whenever the project definition or the kernel's C code changes.
$(VENV)/.stamp-run: pyproject.toml setup.py $(KERNEL_C)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.stamp-dev: pyproject.toml setup.py $(KERNEL_C)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,dask]'
	touch $@ $(VENV)/.stamp-run

run: $(VENV)/.stamp-run
	$(BIN)/pow-mcp

# mypy strict on the package, also as if on Windows and macOS: an attribute those lack is an
# error outside a `sys.platform` guard.
lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --platform win32 --cache-dir .mypy_cache/win32
	$(BIN)/mypy --platform darwin --cache-dir .mypy_cache/darwin

# The suite in parallel worker processes (pytest-xdist): many tests spend their time waiting
# on the servers, browsers and databases they start. The browser tests and the kernel builds
# run on one worker each, one after another (tests/conftest.py); the `timing` tests run after
# the rest.
# `make test PYTEST_WORKERS=0` runs it in one process.
PYTEST_WORKERS ?= 4
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --dist load -m "not wheel and not timing"
# Then the tests that time hashing or read CPU use (the `timing` marker), without the rest of
# the suite beside them: two files at a time, one per core.
PYTEST_TIMING := -m "timing and not wheel" -q -n 2 --dist loadfile

# Lint and the suite side by side: the suite mostly waits, mypy mostly computes. Either
# failing fails `make test`; the slowest tests are listed at the end.
test: $(VENV)/.stamp-dev
	$(MAKE) --no-print-directory -j2 lint suite

suite: $(VENV)/.stamp-dev
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) --durations=15
	$(BIN)/python -m pytest $(PYTEST_TIMING)

# The suite against the lowest versions our dependency floors allow, in a venv of its own:
# the floors in pyproject.toml must be floors that work.
LOWEST := .venv-lowest
test-lowest:
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install --quiet --upgrade pip
	$(LOWEST)/bin/python .ci/lowest_constraints.py pyproject.toml > $(LOWEST)/constraints.txt
	$(LOWEST)/bin/python -m pip install --quiet -c $(LOWEST)/constraints.txt -e '.[dev]'
	$(LOWEST)/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_PARALLEL) --durations=15
	$(LOWEST)/bin/python -m pytest -p no:cacheprovider $(PYTEST_TIMING)

# The whole suite again with the code macOS and Windows run where Linux has its own: file
# locks through portalocker, parent death by the parent's sentinel, stop signals through
# plain handlers. (Windows itself cannot run here; `make lint` type-checks for it.)
test-portable: $(VENV)/.stamp-dev
	POW_PORTABLE=1 $(BIN)/python -m pytest $(PYTEST_PARALLEL) --durations=15
	POW_PORTABLE=1 $(BIN)/python -m pytest $(PYTEST_TIMING)

# The documentation site (mkdocs.yml, docs/) into build/site/; --strict fails on a broken link
# or anchor, or a page missing from the nav.
docs: $(VENV)/.stamp-dev
	$(BIN)/mkdocs build --strict --site-dir build/site

# The reference pages (docs/reference/) written again from the settings registry and the
# live tool list; commit what changes.
reference: $(VENV)/.stamp-dev
	$(BIN)/python docs/generate_reference.py

bench: $(VENV)/.stamp-run
	$(BIN)/python benchmarks/hashrate.py

bench-views: $(VENV)/.stamp-dev
	$(BIN)/python benchmarks/views.py

# The job view (ui/, TypeScript) built into server/ui/ (the MCP App and the browser pages)
# and tests/browser/host.html. The built files are committed, so `make run` and `make test`
# need no Node.js; this needs Node.js 20+ and npm, and fetches the pinned packages.
ui:
	cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

# A rebuild gives exactly the committed files (CI runs it).
ui-check: ui
	git diff --exit-code --stat -- pow_mcp/server/ui tests/browser

# A chaos run (not part of `make test`): servers on one store, busy clients and a fault
# schedule drawn from SEED, then the invariant checker (benchmarks/chaos.py). BACKEND is
# sqlite, postgresql (a server of its own in a temporary directory) or json.
SECONDS ?= 120
SEED ?= 1
BACKEND ?= sqlite
chaos: $(VENV)/.stamp-dev
	PYTHONPATH=. $(BIN)/python benchmarks/chaos.py --seconds $(SECONDS) --seed $(SEED) --backend $(BACKEND)

# The model-checked store and the fuzz tests with Hypothesis's long budget.
test-long: $(VENV)/.stamp-dev
	$(BIN)/python -m pytest --hypothesis-profile=long tests/test_store_model.py tests/test_fuzz_tools.py tests/test_fuzz_files.py

# The kernel's known-answer driver cross-compiled for arm64 (with gcc, and with clang when
# there is one) and run under qemu: the ARMv8 SHA-2 engine and the portable one against a
# reference SHA-256. Installs nothing: it needs gcc-aarch64-linux-gnu and qemu-user.
ARM64_CC ?= aarch64-linux-gnu-gcc
QEMU_ARM64 ?= qemu-aarch64
test-arm64:
	@if ! command -v $(ARM64_CC) >/dev/null || ! command -v $(QEMU_ARM64) >/dev/null; then \
	    echo "test-arm64: skipped, it needs $(ARM64_CC) and $(QEMU_ARM64)" \
	         "(Debian/Ubuntu: apt-get install gcc-aarch64-linux-gnu qemu-user)"; exit 0; fi; \
	set -e; mkdir -p build/arm64; \
	$(ARM64_CC) -O2 -Wall -Wextra -Werror -static -o build/arm64/kat-gcc $(KERNEL_CORE); \
	echo "== arm64, gcc (qemu-aarch64 -cpu max)"; \
	$(QEMU_ARM64) -cpu max build/arm64/kat-gcc --require armv8-sha2; \
	if command -v clang >/dev/null; then \
	    for f in $(KERNEL_CORE); do \
	        clang --target=aarch64-linux-gnu -O2 -Wall -Wextra -Werror -c $$f \
	            -o build/arm64/$$(basename $$f .c)-clang.o; done; \
	    $(ARM64_CC) -static -o build/arm64/kat-clang build/arm64/*-clang.o; \
	    echo "== arm64, clang (qemu-aarch64 -cpu neoverse-n1)"; \
	    $(QEMU_ARM64) -cpu neoverse-n1 build/arm64/kat-clang --require armv8-sha2; fi

# The extension built with AddressSanitizer and UBSan in a copy of the tree, and the kernel
# tests (every message length, every engine) run against it: PYTHONPATH puts the copy's
# pow_mcp ahead of the venv's editable install.
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
SAN_DIR := build/sanitize
test-sanitize: $(VENV)/.stamp-dev
	rm -rf $(SAN_DIR) && mkdir -p $(SAN_DIR)
	cp -r pow_mcp tests setup.py pyproject.toml MANIFEST.in README.md LICENSE $(SAN_DIR)/
	find $(SAN_DIR) -name '*.so' -delete
	cd $(SAN_DIR) && CC=gcc CFLAGS="$(SAN_FLAGS) -g" LDFLAGS="$(SAN_FLAGS)" \
	    ../../$(BIN)/python setup.py -q build_ext --inplace 2>&1 | grep -v "^$$" || true
	cd $(SAN_DIR) && export PYTHONPATH=. ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" && \
	    ../../$(BIN)/python -c "from pow_mcp.pow.kernels import native; \
	        assert native._ext and '$(SAN_DIR)' in native._ext.__file__, native.missing_reason()" && \
	    ../../$(BIN)/python -m pytest -q -p no:cacheprovider \
	        tests/test_kernel.py tests/test_layout.py tests/test_native_kernel.py

# A wheel and an sdist built by `python -m build`, installed into a fresh venv with no C
# compiler on PATH: the wheel must hash with a compiled engine, the sdist fall back to hashlib
# and say how to get the fast kernel. 1-3 minutes (the build compiles the kernel), so these
# tests are marked `wheel` and `make test` leaves them out.
test-wheel: $(VENV)/.stamp-dev
	$(BIN)/python -m pytest -m wheel tests/test_wheel.py

# The wheels the GitHub workflow (.github/workflows/wheels.yml) builds with cibuildwheel on
# each platform, as [tool.cibuildwheel] in pyproject.toml selects them, and the workflow
# checked against GitHub's schema. Offline but for the package registry: both tools come with
# the dev extras, and check-jsonschema ships the schema.
check-wheels: $(VENV)/.stamp-dev
	@set -e; for platform in linux macos windows; do \
	    echo "== cibuildwheel --print-build-identifiers --platform $$platform"; \
	    $(BIN)/cibuildwheel --print-build-identifiers --platform $$platform; done
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/wheels.yml

clean:
	rm -rf $(VENV) build *.egg-info
