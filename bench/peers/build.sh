#!/usr/bin/env bash
# Builds the two peer controllers that bench/race.py races ferryman against, pinned and
# cached outside the repository (not part of `make test`):
#   $FERRYMAN_CACHE/bin/flagger-<version>/flagger             (+ crd.yaml)
#   $FERRYMAN_CACHE/bin/argo-rollouts-<version>/rollouts-controller (+ crds/*.yaml)
# Flagger installs with `go install .../cmd/flagger@<version>` (always name the version:
# @latest resolves to an old release). Argo Rollouts refuses `go install` (its go.mod has
# replace lines), so its module is downloaded with `go mod download -json`, copied out of
# the read-only module cache and built with `go build ./cmd/rollouts-controller` inside.
# The CRDs come from the same downloaded modules (Flagger artifacts/flagger/crd.yaml,
# Argo Rollouts manifests/crds/). A cache entry is reused when its .recipe (version, Go
# toolchain, hash of this script) matches. Cold build times are logged and written to
# <dir>/.build-seconds. Needs the network (module proxy): run outside hack/netns.sh.
# Usage: build.sh [flagger|argo-rollouts]...   (default: both). Prints each dir on stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${FERRYMAN_CACHE:-$HOME/.cache/ferryman}
# One build at a time per cache: a concurrent run (two make targets, two checkouts, two
# test workers) waits here, then finds the binaries cached instead of racing on the same
# .tmp directories (a helm build once failed that way).
mkdir -p "$cache" && exec 9>"$cache/.build.lock" && flock 9
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3} CGO_ENABLED=0
export GOMAXPROCS=${GOMAXPROCS:-2}
FLAGGER_VERSION=${FLAGGER_VERSION:-v1.44.0}
ARGO_ROLLOUTS_VERSION=${ARGO_ROLLOUTS_VERSION:-v1.10.1}
script_hash=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)

log() { printf '[peers %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cached() { # dir binary recipe
  [ "$(cat "$1/.recipe" 2>/dev/null)" = "$3" ] && [ -x "$1/$2" ]
}

build_flagger() {
  local v=$FLAGGER_VERSION out="$cache/bin/flagger-$FLAGGER_VERSION"
  local recipe="$v $GOTOOLCHAIN $script_hash"
  if cached "$out" flagger "$recipe"; then log "flagger $v: cached"; echo "$out"; return; fi
  local start; start=$(date +%s)
  log "flagger $v: go install (cold: ~4 min on 2 cores)"
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  GOBIN="$out.tmp" nice -n 10 go install -trimpath -ldflags "-s -w" \
    "github.com/fluxcd/flagger/cmd/flagger@$v"
  local mod
  mod=$(cd "$out.tmp" && go mod download -json "github.com/fluxcd/flagger@$v" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  cp "$mod/artifacts/flagger/crd.yaml" "$out.tmp/crd.yaml"
  printf '%s' "$(( $(date +%s) - start ))" >"$out.tmp/.build-seconds"
  printf '%s' "$recipe" >"$out.tmp/.recipe"
  rm -rf "$out" && mv "$out.tmp" "$out"
  log "flagger $v: built in $(cat "$out/.build-seconds")s"
  echo "$out"
}

build_argo_rollouts() {
  local v=$ARGO_ROLLOUTS_VERSION out="$cache/bin/argo-rollouts-$ARGO_ROLLOUTS_VERSION"
  local recipe="$v $GOTOOLCHAIN $script_hash"
  if cached "$out" rollouts-controller "$recipe"; then
    log "argo-rollouts $v: cached"; echo "$out"; return
  fi
  local start; start=$(date +%s)
  log "argo-rollouts $v: go mod download + go build (cold: ~6 min on 2 cores)"
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  local mod src="$cache/build/argo-rollouts-$v"
  mod=$(cd "$out.tmp" && go mod download -json "github.com/argoproj/argo-rollouts@$v" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$src" && mkdir -p "$(dirname "$src")" && cp -r "$mod" "$src" && chmod -R u+w "$src"
  (cd "$src" && nice -n 10 go build -trimpath -ldflags "-s -w" \
    -o "$out.tmp/rollouts-controller" ./cmd/rollouts-controller)
  mkdir -p "$out.tmp/crds" && cp "$src"/manifests/crds/*.yaml "$out.tmp/crds/"
  printf '%s' "$(( $(date +%s) - start ))" >"$out.tmp/.build-seconds"
  printf '%s' "$recipe" >"$out.tmp/.recipe"
  rm -rf "$out" && mv "$out.tmp" "$out"
  log "argo-rollouts $v: built in $(cat "$out/.build-seconds")s"
  echo "$out"
}

[ $# -gt 0 ] || set -- flagger argo-rollouts
for tool in "$@"; do
  case $tool in
    flagger) build_flagger ;;
    argo-rollouts) build_argo_rollouts ;;
    *) echo "unknown tool: $tool (flagger|argo-rollouts)" >&2; exit 64 ;;
  esac
done
