# `make demo`: set up and train on a generated sample (no cluster, no bucket, no internet).
# `make test`: set up and run lint and every test (what CI runs).
# `make crds`: regenerate crds/ from ict_api (a test fails when the committed file drifts).
# `make bench-operator`: the operator with 200 resources at once on the emulated cluster.
VENV ?= .venv
PY := $(VENV)/bin/python
WORK := .work

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[trainer,operator,dev]"
	touch $@

.PHONY: setup demo test lint bench bench-operator crds
setup: $(VENV)/.installed

$(WORK)/sample: | $(VENV)/.installed
	$(VENV)/bin/ict sample-data $@

demo: setup $(WORK)/sample
	$(VENV)/bin/ict train --data $(WORK)/sample --strategy scratch --epochs 15 \
		--image-size 64 --output ict-output/sample --overwrite
	$(VENV)/bin/ict predict ict-output/sample/model.keras $(WORK)/sample/validation/circles/circles.0.jpg

CRD_FILE := crds/imageclassifiertrainings.littledata.dev.yaml
crds: setup
	$(VENV)/bin/ict crd > $(CRD_FILE).tmp
	mv $(CRD_FILE).tmp $(CRD_FILE)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q

bench: setup
	# tf_keras must match TensorFlow's minor version, or pip swaps TensorFlow for another.
	$(PY) -m pip install -q scipy "tf_keras==$$($(PY) -c 'import tensorflow as t; print(t.__version__.rsplit(".", 1)[0])').*"
	$(PY) bench/blog_table.py

bench-operator: setup
	$(PY) bench/operator_scale.py
