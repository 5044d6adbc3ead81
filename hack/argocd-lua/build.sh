#!/usr/bin/env bash
# Builds hack/argocd-lua (a small Go program that runs our Argo CD Lua health checks and
# resource actions through Argo CD's own util/lua package) and caches the binary outside
# the repository, keyed by the Argo CD version and a hash of the program's sources:
#   $FERRYMAN_CACHE/bin/argocd-lua-<argo-cd version>/argocd-lua
# go.mod pins github.com/argoproj/argo-cd/v3 and copies argo-cd's non-local `replace`
# lines (its local one, gitops-engine => ./gitops-engine, only applies inside its own
# repository; the tagged gitops-engine module of the same version is used instead).
# Argo CD v3.6 needs Go >= 1.27, so the Go toolchain is pinned here and downloaded by
# the go command itself when the machine's Go is older. A warm run costs nothing; a cold
# one (empty Go build cache) took 7m40s on 2 busy cores (load 7-11), most of it compiling
# argo-cd's API types and their Kubernetes/gRPC dependencies.
# Prints the binary's path on stdout (logs go to stderr). Usage: build.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${FERRYMAN_CACHE:-$HOME/.cache/ferryman}
# One build at a time per cache: a concurrent run (two make targets, two checkouts, two
# test workers) waits here, then finds the binaries cached instead of racing on the same
# .tmp directories (a helm build once failed that way).
mkdir -p "$cache" && exec 9>"$cache/.build.lock" && flock 9
export GOTOOLCHAIN=go1.27.3 GOFLAGS=-mod=readonly CGO_ENABLED=0
export GOMAXPROCS=${GOMAXPROCS:-2}

log() { printf '[argocd-lua %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

version=$(awk '$1 == "github.com/argoproj/argo-cd/v3" {print $2; exit}' "$here/go.mod")
[ -n "$version" ] || { echo "argo-cd version not found in $here/go.mod" >&2; exit 1; }
recipe="$version $GOTOOLCHAIN $(cat "$here/main.go" "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-16)"
out="$cache/bin/argocd-lua-$version"

if [ "$(cat "$out/.recipe" 2>/dev/null)" = "$recipe" ] && [ -x "$out/argocd-lua" ]; then
  log "argo-cd $version: cached"
else
  start=$(date +%s)
  log "argo-cd $version: compiling (cold Go cache: 5-8 minutes on 2 cores)"
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  (cd "$here" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/argocd-lua" .)
  printf '%s' "$recipe" >"$out.tmp/.recipe"
  rm -rf "$out" && mv "$out.tmp" "$out"
  log "argo-cd $version: built in $(( $(date +%s) - start ))s"
fi
echo "$out/argocd-lua"
