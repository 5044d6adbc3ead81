# ferryman: the two commands a user needs are `make demo` and `make test` (README.md).
# Every target installs what it needs itself: a Python virtualenv in .venv, Debian
# packages (hack/install-deps.sh), and the local control plane's binaries, built from
# Go modules once and cached outside the repo (hack/cluster/build.sh, ~/.cache/ferryman).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLUSTER := $(PY) hack/cluster/localcluster.py
PYTEST_ARGS ?=

.PHONY: stats-sim fuzz crds chart-crds chart-docs help test unit e2e lint demo demo-ab up down status deps venv cluster-build clean tools-build bench bench-smoke bench-reaction bench-idle bench-scale bench-growth

help:
	@echo "make demo    bring up the local control plane and run the example end to end"
	@echo "make demo-ab the second act: an A/B test won and promoted, a drifting shadow stopped"
	@echo "make test    install everything needed, lint (make lint), then run unit and e2e tests"
	@echo "make unit    unit tests only (no cluster)"
	@echo "make e2e     e2e tests only (local control plane, or FERRYMAN_TEST_KUBECONFIG)"
	@echo "make gitops  the GitOps loop with real Argo CD only (tests/gitops, in a private network namespace)"
	@echo "make lint    ruff check and format, mypy (operator strict, tests checked), import-linter"
	@echo "make up / down / status   the local control plane (hack/cluster/)"
	@echo "make bench   benchmarks: print figures, never fail on a timing (docs/benchmarks.md)"
	@echo "make faults  the full fault matrix (Toxiproxy, API server/etcd restarts; docs/reliability.md), not in CI"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 required"'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev,storage]'
	touch $@

venv: $(VENV)/.installed

deps:
	bash hack/install-deps.sh

cluster-build:
	bash hack/cluster/build.sh

# Lint tools the packaging tests run (actionlint), built from Go modules and cached like
# the control plane (hack/tools/build.sh, ~/.cache/ferryman/bin).
tools-build:
	bash hack/tools/build.sh

up: venv deps cluster-build
	$(CLUSTER) up

down:
	$(PYTHON) hack/cluster/localcluster.py down

status:
	$(PYTHON) hack/cluster/localcluster.py status

# The README's test command (and CI's only one): everything from a fresh clone, the lint
# tools first (a few seconds; they fail before the cluster is built), then every test.
test: lint deps cluster-build tools-build argocd-lua argocd-build toxiproxy-build storage-servers-build mlflow-build
	bash hack/run-tests.sh $(PYTEST_ARGS)

unit: venv tools-build argocd-lua
	bash hack/run-tests.sh -m "not e2e" $(PYTEST_ARGS)

e2e: venv deps cluster-build tools-build argocd-lua
	bash hack/run-tests.sh -m e2e $(PYTEST_ARGS)

# mypy's cache lives outside the repository (like the Go builds), so a fresh clone's
# `make test` reuses it: mypy compares file hashes when mtimes differ.
lint: venv
	$(VENV)/bin/ruff check operator tests hack bench
	$(VENV)/bin/ruff format --check operator tests hack bench
	MYPY_CACHE_DIR="$${FERRYMAN_CACHE:-$$HOME/.cache/ferryman}/mypy" $(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Benchmarks (bench/, docs/benchmarks.md) against the local control plane or
# FERRYMAN_TEST_KUBECONFIG: they print figures and never fail on a timing. The smoke
# variant (one bounded run each) also runs inside `make test`, as tests/e2e/test_bench_smoke.py.
bench: venv deps cluster-build
	$(PY) -m bench.rollback

bench-smoke: venv deps cluster-build
	$(PY) -m bench.rollback --smoke
	$(PY) -m bench.reaction --smoke
	$(PY) -m bench.idle --smoke
	$(PY) -m bench.scale --smoke
	$(PY) -m bench.growth --smoke

bench-reaction: venv deps cluster-build
	$(PY) -m bench.reaction

bench-idle: venv deps cluster-build
	$(PY) -m bench.idle

bench-scale: venv deps cluster-build
	$(PY) -m bench.scale

# py-spy (the bench extra) profiles the largest point.
bench-growth: venv deps cluster-build
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(PY) -m bench.growth

# Regenerate crds/ from the pydantic models (a unit test fails when they drift).
crds: venv
	$(PY) -m ferryman.api.crds --out crds
	$(PY) hack/chart_crds.py

# The chart's CRD templates from crds/ (a unit test fails when they drift).
chart-crds: venv
	$(PY) hack/chart_crds.py

# docs/install.md's values reference from the chart's values.schema.json (a unit test
# fails when they drift).
chart-docs: venv
	$(PY) hack/chart_values_doc.py

# The README's main command.
demo: venv deps cluster-build
	$(PY) hack/demo.py

# The demo's second act (issue 16): an A/B test and a drifting shadow (hack/demo_ab.py).
demo-ab: venv deps cluster-build
	$(PY) hack/demo_ab.py

clean: down
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Argo CD health checks and actions (charts/argocd/resource_customizations): render them
# into argocd-cm and argo-cd chart values (a unit test fails on drift), and build the Go
# harness that runs them through Argo CD's own Lua package (cached, hack/argocd-lua/build.sh).
.PHONY: argocd argocd-lua
argocd: venv
	$(PY) hack/argocd-lua/render.py

argocd-lua:
	bash hack/argocd-lua/build.sh >/dev/null

# Real Argo CD for the GitOps loop test (docs/gitops.md, "The loop as tested"): its
# multi-call binary, built and cached like the control plane (hack/argocd/build.sh), and
# the test alone, inside a private network namespace (hack/gitops-tests.sh; `make test`
# runs it after the main suite).
.PHONY: argocd-build gitops
argocd-build:
	bash hack/argocd/build.sh >/dev/null

gitops: venv deps cluster-build argocd-build
	bash hack/gitops-tests.sh $(PYTEST_ARGS)

# Side by side with Argo Rollouts and Flagger (docs/benchmarks.md "Side by side"): builds
# both peers once (cached outside the repo, needs the network), then races in a private
# network namespace. Not part of `make test`.
.PHONY: bench-race
bench-race: venv deps cluster-build
	bash bench/peers/build.sh
	$(PY) -m bench.race

# Toxiproxy (the fault proxy of tests/e2e/test_faults.py), built from its Go module and
# cached like the lint tools (hack/tools/build.sh). `make test` runs one case of each
# fault kind; `make faults` the whole matrix (docs/reliability.md "## Faults"), on its
# own, without xdist: some cases restart the shared etcd. Not part of CI.
.PHONY: toxiproxy-build faults
toxiproxy-build:
	bash hack/tools/build.sh toxiproxy >/dev/null

faults: venv deps cluster-build toxiproxy-build
	FERRYMAN_FAULT_MATRIX=1 FERRYMAN_TEST_WORKERS=0 bash hack/run-tests.sh tests/e2e/test_faults.py $(PYTEST_ARGS)

# Leader election: the HA e2e with 10 leader kills and ferryman's default timings
# (10/7/2 s, what the chart ships); prints the failover times (docs/reliability.md).
# `make test` runs the same test with 2 kills and short timings. Not part of `make test`.
.PHONY: ha
ha: venv deps cluster-build
	FERRYMAN_TEST_WORKERS=0 FERRYMAN_HA_KILLS=10 FERRYMAN_HA_TIMINGS=default \
		bash hack/run-tests.sh -s tests/e2e/test_ha.py

# The fuzz tests (docs/reliability.md, "Fuzzed input") with FERRYMAN_FUZZ_SCALE (default 10)
# times the examples of `make test` and a random seed, printed (FERRYMAN_FUZZ_SEED=<seed>
# replays it); Hypothesis' database in $TMPDIR/ferryman-hypothesis. Not run by CI.
fuzz: venv deps cluster-build
	FERRYMAN_FUZZ=1 FERRYMAN_TEST_WORKERS=0 bash hack/run-tests.sh -s -p no:xdist \
		tests/e2e/test_fuzz_admission.py tests/e2e/test_fuzz_reconcile.py $(PYTEST_ARGS)

# The A/B verdict's simulations at ten times the size `make test` runs (10,000 A/A runs,
# 6,000 A/B runs; docs/experiments.md), printing the false-positive rate and the power.
stats-sim: venv
	FERRYMAN_SIM_RUNS=10000 $(VENV)/bin/pytest -p no:cacheprovider -q -s tests/unit/test_sequential_simulation.py

# The artifact stores of the storage initializer's tests (tests/e2e/test_storage_init.py,
# docs/artifacts.md): the CNCF OCI registry and fake-gcs-server from their Go modules, and
# moto (S3) in its own virtualenv, cached like the lint tools (hack/tools/build.sh).
.PHONY: storage-servers-build
storage-servers-build:
	nice -n 10 bash hack/tools/build.sh registry fake-gcs-server moto >/dev/null

# The MLflow import tests (tests/e2e/test_mlflow_import.py, docs/mlflow.md): a real MLflow
# tracking server and dvc in a virtualenv of their own, cached like moto (hack/tools/build.sh).
.PHONY: mlflow-build
mlflow-build:
	nice -n 10 bash hack/tools/build.sh mlflow >/dev/null
