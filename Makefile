# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo lint test bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first: sam2 is a source distribution built against the installed torch.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q "setuptools<81" wheel
	SAM2_BUILD_CUDA=0 $(PY) -m pip install -q --no-build-isolation sam2==1.1.0
	$(PY) -m pip install -q --no-deps imagecorruptions==1.1.2
	$(PY) -m pip install -q -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pipelines.demo --out runs/demo

LINT_PATHS := corruptor maa_train maa_format pipelines benchmarks tests

lint: $(STAMP)
	$(PY) -m ruff check $(LINT_PATHS)

test: lint
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/bench_corruptions.py

clean:
	rm -rf runs .pytest_cache
