#!/usr/bin/env bash
# Builds the local control plane's binaries from Go modules and caches them outside the
# repository, keyed by version:
#   $FERRYMAN_CACHE/bin/kubernetes-<v>/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
#   $FERRYMAN_CACHE/bin/etcd-<v>/etcd
#   $FERRYMAN_CACHE/bin/kwok-<v>/kwok
#   $FERRYMAN_CACHE/bin/helm-<v>/helm
# Each tool is built from a small go.mod of its own (under $FERRYMAN_CACHE/build/) so
# their dependency versions never fight. A tool whose binaries are present is skipped, so
# a warm run costs nothing. Usage: build.sh [tool...]   (default: all)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

cache=${FERRYMAN_CACHE:-$HOME/.cache/ferryman}
# One build at a time per cache: a concurrent run (two make targets, two checkouts, two
# test workers) waits here, then finds the binaries cached instead of racing on the same
# .tmp directories (a helm build once failed that way).
mkdir -p "$cache" && exec 9>"$cache/.build.lock" && flock 9
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
# Two cores: more parallel compiles than that only costs memory.
export GOMAXPROCS=${GOMAXPROCS:-2}

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# bin_dir TOOL VERSION -> the versioned output directory
bin_dir() { echo "$cache/bin/$1-$2"; }

# have DIR RECIPE BIN... -> 0 when every binary exists and was built by the same recipe
# (version and flags, stamped into DIR/.recipe), so changing a flag here rebuilds.
have() {
  local dir=$1 recipe=$2; shift 2
  [ "$(cat "$dir/.recipe" 2>/dev/null)" = "$recipe" ] || return 1
  for b in "$@"; do [ -x "$dir/$b" ] || return 1; done
}

# finish OUT RECIPE -> move the freshly built OUT.tmp into place with its stamp
finish() {
  printf '%s' "$2" >"$1.tmp/.recipe"
  rm -rf "$1" && mv "$1.tmp" "$1"
}

# new_module DIR -> an empty module directory for one tool
new_module() {
  rm -rf "$1" && mkdir -p "$1"
  (cd "$1" && go mod init "ferryman.local/build/$(basename "$1")" >/dev/null 2>&1)
}

build_kubernetes() {
  local v=$KUBERNETES_VERSION out; out=$(bin_dir kubernetes "$v")
  local bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  local minor=${v#v1.}; minor=${minor%%.*}
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  if have "$out" "$v $ld" "${bins[@]}"; then log "kubernetes $v: cached"; return; fi
  local mod="$cache/build/kubernetes-$v"; new_module "$mod"
  log "kubernetes $v: resolving modules"
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and points them at
  # ./staging with replace lines that only apply inside its own repository. Generate
  # the matching replace lines (k8s.io/x => k8s.io/x v0.<minor>.<patch>) from its go.mod
  # at this exact version instead of keeping a hand-written copy.
  local staging="v0.${v#v1.}"
  go mod download -json "k8s.io/kubernetes@$v" >"$mod/dl.json"
  local gomod; gomod=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["GoMod"])' "$mod/dl.json")
  (
    cd "$mod"
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk '{print $1}' | while read -r m; do
      go mod edit -replace "$m=$m@$staging"
    done
    go mod edit -require "k8s.io/kubernetes@$v"
    # A main package list to resolve against, so `go mod tidy`-like resolution sees them.
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$v" "k8s.io/kubernetes/cmd/kube-controller-manager@$v" \
      "k8s.io/kubernetes/cmd/kube-scheduler@$v" "k8s.io/kubernetes/cmd/kubectl@$v" >/dev/null 2>&1 || \
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$v" "k8s.io/kubernetes/cmd/kube-controller-manager@$v" \
      "k8s.io/kubernetes/cmd/kube-scheduler@$v" "k8s.io/kubernetes/cmd/kubectl@$v"
  )
  log "kubernetes $v: compiling ${bins[*]} (the long part of a cold build)"
  mkdir -p "$out.tmp"
  (cd "$mod" && go build -trimpath -ldflags "$ld" -o "$out.tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  finish "$out" "$v $ld"
}

build_etcd() {
  local v=$ETCD_VERSION out; out=$(bin_dir etcd "$v")
  if have "$out" "$v" etcd; then log "etcd $v: cached"; return; fi
  # The buildable main package is the module go.etcd.io/etcd/server/v3 itself; its own
  # replace lines make `go install ...@v` fail, so build it from a module of ours.
  local mod="$cache/build/etcd-$v"; new_module "$mod"
  log "etcd $v: resolving and compiling"
  mkdir -p "$out.tmp"
  (cd "$mod" && go get "go.etcd.io/etcd/server/v3@$v" 2>/dev/null &&
     go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3)
  finish "$out" "$v"
}

go_install() { # go_install TOOL VERSION PACKAGE BINARY [LDFLAGS]
  local out ld="-s -w ${5:-}"; out=$(bin_dir "$1" "$2")
  if have "$out" "$2 $ld" "$4"; then log "$1 $2: cached"; return; fi
  log "$1 $2: go install $3@$2"
  mkdir -p "$out.tmp"
  GOBIN="$out.tmp" go install -trimpath -ldflags "$ld" "$3@$2"
  finish "$out" "$2 $ld"
}

build_kwok() { go_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok kwok; }
# Without these, `helm version` reports only "v4.3".
build_helm() {
  go_install helm "$HELM_VERSION" helm.sh/helm/v4/cmd/helm helm \
    "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
}

# Fetch the CRD/stage source modules into the module cache (no compilation); up.sh reads
# their YAML from there.
fetch_sources() {
  log "sources: gateway-api $GATEWAY_API_VERSION, istio api $ISTIO_API_VERSION, kwok $KWOK_VERSION"
  go mod download "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" "istio.io/api@$ISTIO_API_VERSION" \
    "sigs.k8s.io/kwok@$KWOK_VERSION"
}

start=$(date +%s)
tools=("$@"); [ ${#tools[@]} -gt 0 ] || tools=(etcd kwok helm kubernetes sources)
for t in "${tools[@]}"; do
  case $t in
    kubernetes) build_kubernetes ;; etcd) build_etcd ;; kwok) build_kwok ;;
    helm) build_helm ;; sources) fetch_sources ;;
    *) echo "unknown tool: $t (kubernetes etcd kwok helm sources)" >&2; exit 2 ;;
  esac
done
log "done in $(( $(date +%s) - start ))s; binaries under $cache/bin"
