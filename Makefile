# Two commands do all set-up on a fresh machine:
#   make demo   create .venv, install torch + localgrad, train the demo
#   make test   create .venv, install torch + localgrad, run the tests
# Where the base python already has torch (a GPU machine), the venv reuses it
# instead of installing the CPU build.

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
PY := $(VENV)/bin/python
SOURCES := $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh') setup.py pyproject.toml

.PHONY: install demo test bench clean

$(VENV)/.torch:
	@if $(PYTHON) -c 'import torch' 2>/dev/null; then \
	  echo "using the torch of $(PYTHON)"; \
	  $(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
	  $(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q torch==$(TORCH_VERSION); \
	fi
	$(PY) -m pip install -q --upgrade "setuptools>=64" wheel ninja
	touch $@

$(VENV)/.installed: $(VENV)/.torch $(SOURCES)
	$(PY) -m pip install -q --no-build-isolation -e '.[data,test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m localgrad demo

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/bench_dfa.py

clean:
	rm -rf build localgrad/_C*.so $(VENV)
