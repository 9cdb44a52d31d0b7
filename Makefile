# Two commands do all set-up on a fresh machine:
#   make demo   create .venv, install torch + localgrad, train the demo
#   make test   create .venv, install torch + localgrad, run the tests
# and
#   make dist   the sdist and a wheel built from it, into dist/ (for this
#               venv's torch; tools/build_wheel.sh makes the CUDA wheels)
#   make docs   the docs site into site/ (mkdocs build --strict)
# Where the base python already has torch (a GPU machine), the venv reuses it
# instead of installing the CPU build.

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
PY := $(VENV)/bin/python
# pytest-xdist: tests run on every core (at most 8 workers); each adversarial
# batch stays on one worker (loadgroup).
PYTEST_ARGS ?= -n auto --maxprocesses 8 --dist loadgroup
SOURCES := $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh') setup.py pyproject.toml

.PHONY: install demo test bench dist docs clean

$(VENV)/.torch:
	@if $(PYTHON) -c 'import torch' 2>/dev/null; then \
	  echo "using the torch of $(PYTHON)"; \
	  $(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
	  $(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q torch==$(TORCH_VERSION); \
	fi
	$(PY) -m pip install -q --upgrade "setuptools>=70.1" wheel ninja build
	touch $@

$(VENV)/.installed: $(VENV)/.torch $(SOURCES)
	$(PY) -m pip install -q --no-build-isolation -e '.[data,test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m localgrad demo

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: install
	$(VENV)/bin/localgrad bench dfa

# The docs extra of pyproject.toml; mkdocstrings imports nothing, but the
# hooks read localgrad's rule registry, hence the install.
$(VENV)/.docs: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q "mkdocs-material>=9.5" "mkdocstrings[python]>=0.26"
	touch $@

docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

dist: $(VENV)/.torch
	$(PY) -m pip install -q build
	$(PY) -m build --no-isolation --outdir dist

clean:
	rm -rf build dist site localgrad/_C*.so localgrad/_build_config.py $(VENV)
