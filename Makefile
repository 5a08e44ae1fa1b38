# xft: `make demo` runs the whole job on the embedded default model; `make test` runs the test suite.
# Both create .venv and install everything first (CPU torch where no NVIDIA GPU is present).

VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_CPU ?= torch==2.13.0

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.xft-installed

$(VENV)/.xft-installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1; then \
		echo "NVIDIA GPU found: torch comes from pyproject's dependency (CUDA build)"; \
	else \
		echo "no GPU: installing the CPU build $(TORCH_CPU)"; $(PY) -m pip install -q $(TORCH_CPU); \
	fi
	$(PY) -m pip install -q -e ".[all]"
	@# the optional 4-bit base (QLoRA): its tests run where it installs (a 40 MB wheel) and skip where it does not
	$(PY) -m pip install -q -e ".[qlora]" || echo "bitsandbytes did not install: the QLoRA tests (tests/test_qlora.py) will skip"
	touch $@

demo: setup
	$(PY) examples/demo.py

test: setup lint
	$(PY) -m pytest tests -q

# architecture contracts (import-linter), style (ruff), types of the plugin API (mypy strict)
lint: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check xft_core plugins tests benchmarks examples
	$(VENV)/bin/mypy xft_core/hooks

bench: setup
	$(PY) benchmarks/hotswap.py
	$(PY) benchmarks/gguf_load.py

clean:
	rm -rf $(VENV) runs .pytest_cache
