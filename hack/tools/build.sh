#!/usr/bin/env bash
# Builds the lint tools that `make test` runs (hack/tools/versions.env) from their Go
# modules and caches them outside the repository, keyed by version and flags, in the same
# way as hack/cluster/build.sh:
#   $FERRYMAN_CACHE/bin/actionlint-<v>/actionlint
# A tool whose binary is present and was built by the same recipe is skipped, so a warm
# run costs nothing. Usage: build.sh [tool...]   (default: actionlint; tools: actionlint,
# toxiproxy: the fault proxy of tests/e2e/test_faults.py, built by `make toxiproxy-build`)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=versions.env
. "$here/versions.env"

cache=${FERRYMAN_CACHE:-$HOME/.cache/ferryman}
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

start=$(date +%s)
tools=("$@"); [ ${#tools[@]} -gt 0 ] || tools=(actionlint)
for t in "${tools[@]}"; do
  case $t in
    actionlint) build_actionlint ;;
    toxiproxy) build_toxiproxy ;;
    *) echo "unknown tool: $t (actionlint, toxiproxy)" >&2; exit 2 ;;
  esac
done
log "done in $(( $(date +%s) - start ))s; binaries under $cache/bin"
