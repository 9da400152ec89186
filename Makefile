# `make demo` and `make test` do all the set-up on a fresh machine (they create .venv).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench install

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m tada_zoo.demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --durations=15

bench: $(STAMP)
	$(PY) benchmarks/bench_tadaconv.py
	$(PY) benchmarks/bench_models.py
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_extract.py
	$(PY) benchmarks/bench_tadaconv3d.py
	$(PY) benchmarks/bench_convnext.py
	$(PY) benchmarks/bench_tadaformer.py
	$(PY) benchmarks/bench_plugin.py
