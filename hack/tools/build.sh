#!/usr/bin/env bash
# Builds the lint tools that `make test` runs (hack/tools/versions.env) from their Go
# modules and caches them outside the repository, keyed by version and flags, in the same
# way as hack/cluster/build.sh:
#   $FERRYMAN_CACHE/bin/actionlint-<v>/actionlint
# A tool whose binary is present and was built by the same recipe is skipped, so a warm
# run costs nothing. Usage: build.sh [tool...]   (default: actionlint; tools: actionlint,
# toxiproxy: the fault proxy of tests/e2e/test_faults.py, built by `make toxiproxy-build`;
# registry, fake-gcs-server: the OCI and GCS stores of the storage initializer's tests,
# built by `make storage-servers-build`; mlflow: the MLflow tracking server and dvc of the
# import tests, built by `make mlflow-build`)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=versions.env
. "$here/versions.env"

cache=${FERRYMAN_CACHE:-$HOME/.cache/ferryman}
# One build at a time per cache: a concurrent run (two make targets, two checkouts, two
# test workers) waits here, then finds the binaries cached instead of racing on the same
# .tmp directories (a helm build once failed that way).
mkdir -p "$cache" && exec 9>"$cache/.build.lock" && flock 9
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
export GOMAXPROCS=${GOMAXPROCS:-2}

log() { printf '[tools %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# go_install TOOL VERSION PACKAGE BINARY [LDFLAGS]: build into a temporary directory,
# stamp the recipe, then move it into place, so an interrupted build is never "cached".
go_install() {
  local out="$cache/bin/$1-$2" ld="-s -w ${5:-}"
  local recipe="$2 $ld"
  if [ "$(cat "$out/.recipe" 2>/dev/null)" = "$recipe" ] && [ -x "$out/$4" ]; then
    log "$1 $2: cached"; return
  fi
  log "$1 $2: go install $3@$2"
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  GOBIN="$out.tmp" go install -trimpath -ldflags "$ld" "$3@$2"
  printf '%s' "$recipe" >"$out.tmp/.recipe"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# Without the version stamp `actionlint -version` reports only "(devel)".
build_actionlint() {
  go_install actionlint "$ACTIONLINT_VERSION" github.com/rhysd/actionlint/cmd/actionlint actionlint \
    "-X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION"
}

# Toxiproxy's server (cmd/server) installs as `server`; the fault tests look for
# $FERRYMAN_CACHE/bin/toxiproxy-<v>/server. The version stamp feeds `server -version`.
build_toxiproxy() {
  go_install toxiproxy "$TOXIPROXY_VERSION" github.com/Shopify/toxiproxy/v2/cmd/server server \
    "-X github.com/Shopify/toxiproxy/v2.Version=${TOXIPROXY_VERSION#v}"
}

# The CNCF distribution registry (an OCI registry) installs as `registry`; the storage
# tests look for $FERRYMAN_CACHE/bin/registry-<v>/registry.
build_registry() {
  go_install registry "$DISTRIBUTION_VERSION" github.com/distribution/distribution/v3/cmd/registry \
    registry "-X github.com/distribution/distribution/v3/version.version=$DISTRIBUTION_VERSION"
}

# fake-gcs-server: $FERRYMAN_CACHE/bin/fake-gcs-server-<v>/fake-gcs-server.
build_fake_gcs_server() {
  go_install fake-gcs-server "$FAKE_GCS_SERVER_VERSION" github.com/fsouza/fake-gcs-server \
    fake-gcs-server
}

# moto's S3 server (`python -m moto.server`) in a virtualenv of its own, pinned:
# $FERRYMAN_CACHE/venv/moto-<v>/bin/python. It cannot share the dev virtualenv (pyproject.toml).
build_moto() {
  local out="$cache/venv/moto-$MOTO_VERSION"
  local recipe="moto==$MOTO_VERSION flask==$MOTO_FLASK_VERSION flask-cors==$MOTO_FLASK_CORS_VERSION"
  if [ "$(cat "$out/.recipe" 2>/dev/null)" = "$recipe" ] && [ -x "$out/bin/python" ]; then
    log "moto $MOTO_VERSION: cached"; return
  fi
  log "moto $MOTO_VERSION: pip install $recipe"
  rm -rf "$out.tmp" && mkdir -p "$(dirname "$out")"
  python3 -m venv "$out.tmp"
  # shellcheck disable=SC2086 # the recipe is a list of requirements
  "$out.tmp/bin/pip" install --quiet --disable-pip-version-check $recipe
  printf '%s' "$recipe" >"$out.tmp/.recipe"
  # Moved into place whole: `bin/python -m moto.server` finds its pyvenv.cfg beside bin/
  # (the scripts' shebangs name the temporary path and are not used).
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# The MLflow tracking server (`mlflow server`) and the dvc CLI of the MLflow import tests
# (tests/e2e/test_mlflow_import.py, docs/mlflow.md), one virtualenv, pinned:
# $FERRYMAN_CACHE/venv/mlflow-<v>/bin/{python,mlflow,dvc}. Neither may enter the dev
# virtualenv: the operator reads MLflow over plain HTTP and needs neither package.
build_mlflow() {
  local out="$cache/venv/mlflow-$MLFLOW_VERSION"
  local recipe="mlflow==$MLFLOW_VERSION dvc==$DVC_VERSION"
  if [ "$(cat "$out/.recipe" 2>/dev/null)" = "$recipe" ] && [ -x "$out/bin/python" ]; then
    log "mlflow $MLFLOW_VERSION, dvc $DVC_VERSION: cached"; return
  fi
  log "mlflow $MLFLOW_VERSION, dvc $DVC_VERSION: pip install $recipe"
  rm -rf "$out" "$out.tmp" && mkdir -p "$(dirname "$out")"
  # Built in place (not moved): the console scripts `mlflow` and `dvc` name their
  # interpreter by absolute path. The recipe stamp, written last, marks it complete.
  python3 -m venv "$out"
  # --no-compile: ~150 packages (pyarrow, scipy, pandas... that mlflow pulls in) are
  # byte-compiled at install by default, most of the install's CPU; the few modules the
  # tests import are compiled on first use instead.
  # shellcheck disable=SC2086 # the recipe is a list of requirements
  "$out/bin/pip" install --quiet --disable-pip-version-check --no-compile $recipe
  printf '%s' "$recipe" >"$out/.recipe"
}

start=$(date +%s)
tools=("$@"); [ ${#tools[@]} -gt 0 ] || tools=(actionlint)
for t in "${tools[@]}"; do
  case $t in
    actionlint) build_actionlint ;;
    toxiproxy) build_toxiproxy ;;
    registry) build_registry ;;
    fake-gcs-server) build_fake_gcs_server ;;
    moto) build_moto ;;
    mlflow) build_mlflow ;;
    *) echo "unknown tool: $t (actionlint, toxiproxy, registry, fake-gcs-server, moto, mlflow)" >&2; exit 2 ;;
  esac
done
log "done in $(( $(date +%s) - start ))s; binaries under $cache/bin"
