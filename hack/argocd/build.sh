#!/usr/bin/env bash
# Builds Argo CD's multi-call binary (github.com/argoproj/argo-cd/v3's ./cmd: argocd,
# argocd-server, argocd-repo-server, argocd-application-controller, ... chosen by argv[0]
# or ARGOCD_BINARY_NAME) from its Go module, for the GitOps loop test
# (tests/gitops/, tests/harness/argocd_loop.py), and caches it outside the repository:
#   $FERRYMAN_CACHE/bin/argocd-<version>/argocd            (the binary)
#   $FERRYMAN_CACHE/bin/argocd-<version>/argocd-server     (symlinks: the binary picks
#   ... argocd-repo-server, argocd-application-controller   its component from argv[0])
#   $FERRYMAN_CACHE/bin/argocd-<version>/crds/              (the module's Application,
#                                                            AppProject, ApplicationSet CRDs)
#   $FERRYMAN_CACHE/bin/argocd-<version>/git-verify-wrapper.sh  (the module's helper the
#                          repo-server runs on every revision; Argo CD's image puts it on PATH)
# The version is the one hack/argocd-lua pins (so the Lua checks and the loop test run the
# same Argo CD), and the build shares the Go build cache with it: the dependencies are
# the same module graph.
# `go install` refuses argo-cd (its go.mod has replace lines), so the module is
# downloaded (`go mod download -json`), copied to a writable directory, and its local
# replace (gitops-engine => ./gitops-engine, only valid inside argo-cd's own repository)
# is dropped: the tagged gitops-engine module of the same version is required instead.
# The UI is not built: ui/embed.go's go:embed compiles against the placeholder
# directory the module ships. Argo CD v3.6 needs Go >= 1.27: the toolchain is pinned
# and fetched by the go command when the machine's Go is older.
# A warm run costs nothing; a cold one took 19 minutes wall (4 minutes of CPU) on 2 cores
# at load 10-22, with the Go build cache already warm for the Lua harness's part of the
# module graph. Prints the binary's path on stdout (logs go to stderr).
# Usage: build.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${FERRYMAN_CACHE:-$HOME/.cache/ferryman}
# One build at a time per cache: a concurrent run (two make targets, two checkouts, two
# test workers) waits here, then finds the binaries cached instead of racing on the same
# .tmp directories (a helm build once failed that way).
mkdir -p "$cache" && exec 9>"$cache/.build.lock" && flock 9
export GOTOOLCHAIN=${ARGOCD_GOTOOLCHAIN:-go1.27.3} GOFLAGS=-mod=mod CGO_ENABLED=0
export GOMAXPROCS=${GOMAXPROCS:-2}

log() { printf '[argocd %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The same Argo CD as the Lua harness (ARGOCD_VERSION overrides, e.g. v3.2.12 with
# ARGOCD_GOTOOLCHAIN=local on Go 1.26).
version=${ARGOCD_VERSION:-$(awk '$1 == "github.com/argoproj/argo-cd/v3" {print $2; exit}' "$here/../argocd-lua/go.mod")}
[ -n "$version" ] || { echo "argo-cd version not found in hack/argocd-lua/go.mod" >&2; exit 1; }
mod=github.com/argoproj/argo-cd/v3
engine=github.com/argoproj/argo-cd/gitops-engine/v3
ld="-s -w -X $mod/common.version=${version#v} -X $mod/common.gitTag=$version -X $mod/common.gitTreeState=clean -X $mod/common.buildDate=1970-01-01T00:00:00Z"
names=(argocd-server argocd-repo-server argocd-application-controller)
# Bump the revision when the build steps change (not for comment edits: a relink on a warm
# Go cache still takes a minute).
recipe="r1 $version $GOTOOLCHAIN CGO_ENABLED=$CGO_ENABLED -trimpath $ld"
out="$cache/bin/argocd-$version"

have() {
  [ "$(cat "$out/.recipe" 2>/dev/null)" = "$recipe" ] && [ -x "$out/argocd" ] || return 1
  for n in "${names[@]}"; do [ -L "$out/$n" ] || return 1; done
  [ -f "$out/crds/application-crd.yaml" ] && [ -x "$out/git-verify-wrapper.sh" ] || return 1
}

if have; then
  log "argo-cd $version: cached"
else
  start=$(date +%s)
  src="$cache/build/argocd-$version"
  log "argo-cd $version: downloading the module"
  dir=$(go mod download -json "$mod@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$src" && mkdir -p "$(dirname "$src")" && cp -r "$dir" "$src" && chmod -R u+w "$src"
  (
    cd "$src"
    if grep -qE "^replace $engine => \./" go.mod || grep -qE "^\s+$engine => \./" go.mod; then
      go mod edit -dropreplace "$engine"
      # The tag of the engine released with this argo-cd (gitops-engine/vX.Y.Z).
      go mod edit -require "$engine@$version"
    fi
    log "argo-cd $version: compiling ./cmd (cold Go cache: several minutes on 2 cores)"
    rm -rf "$out.tmp" && mkdir -p "$out.tmp"
    go build -trimpath -ldflags "$ld" -o "$out.tmp/argocd" ./cmd
    # What Argo CD's image ships beside the binary and the harness needs: the CRDs, and
    # the script the repo-server runs (from PATH) to read a revision's GPG signature.
    mkdir -p "$out.tmp/crds" && cp manifests/crds/*-crd.yaml "$out.tmp/crds/"
    cp hack/git-verify-wrapper.sh "$out.tmp/" && chmod +x "$out.tmp/git-verify-wrapper.sh"
  )
  for n in "${names[@]}"; do ln -s argocd "$out.tmp/$n"; done
  printf '%s' "$recipe" >"$out.tmp/.recipe"
  rm -rf "$out" && mv "$out.tmp" "$out"
  rm -rf "$src"
  log "argo-cd $version: built in $(( $(date +%s) - start ))s"
fi
echo "$out/argocd"
