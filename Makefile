# `make demo` and `make test` do all the set-up on a fresh machine (they create .venv).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-all bench install min-deps

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m tada_zoo.cli.demo

# `make test`: the suite without the long tests (tests/conftest.py SLOW: docs pages that train and convert,
# full-size conversions, exports, multi-process runs); `make test-slow`: those; `make test-all`: both in
# one run. CI (.ci/run) runs `make test` and then `make test-slow`.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow" --durations=10

test-slow: $(STAMP)
	$(PY) -m pytest -q -n 2 -m slow --durations=10

test-all: $(STAMP)
	$(PY) -m pytest -q -n 2 --durations=15

# `make bench ORIGINAL=/path/to/TAdaConv` adds the comparison with the original code (bench_peers.py);
# without it that section is skipped with a note on how to get a checkout.
ORIGINAL ?=

bench: $(STAMP)
	$(PY) benchmarks/bench_tadaconv.py
	$(PY) benchmarks/bench_models.py
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_extract.py
	$(PY) benchmarks/bench_tadaconv3d.py
	$(PY) benchmarks/bench_convnext.py
	$(PY) benchmarks/bench_tadaformer.py
	$(PY) benchmarks/bench_plugin.py
	$(PY) benchmarks/bench_peers.py $(if $(ORIGINAL),--original $(ORIGINAL))

# `make min-deps`: the declared lower bounds (requirements-min.txt) in a venv of their own and the
# models, conversion, Hub, data and training tests against them, one process (docs/install.md).
# A fresh venv each time: what a new install resolves.
# Not part of `make test`: it downloads torch 2.3 (about 2.5 GB with its CUDA wheels, pip-cached).
MIN_VENV ?= .venv-min
MIN_TESTS ?= tests/test_models.py tests/test_layers.py tests/test_convert.py tests/test_hub.py \
	tests/test_timm_contracts.py tests/test_data_decode.py tests/test_data_transforms.py \
	tests/test_data_datasets.py tests/test_engine_train.py tests/test_fast_paths.py

min-deps:
	rm -rf $(MIN_VENV) && python3 -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install -q --upgrade pip
	$(MIN_VENV)/bin/python -m pip install -q -e '.[test]' -c requirements-min.txt
	$(MIN_VENV)/bin/python -m pip check
	$(MIN_VENV)/bin/python -m pip list | grep -iE '^(torch|torchvision|timm|huggingface.hub|safetensors|av|pillow|numpy|tqdm) '
	$(MIN_VENV)/bin/python -m pytest -q -p no:xdist -p no:cacheprovider $(MIN_TESTS)
