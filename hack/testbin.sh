#!/usr/bin/env bash
# Builds the test bed's control plane (kube-apiserver, etcd, and kube-controller-manager for the
# packages that run Cluster API's controllers, whose deletions need the garbage collector) from the
# Go module proxy.
#
# The binaries land in $TESTBIN_DIR/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION, a folder named after the
# pins, so a build for the same pins is never repeated and a newer pin is a one-line change of
# KUBE_VERSION or ETCD_VERSION in the Makefile. The script prints that folder on its last line;
# envtest reads it from KUBEBUILDER_ASSETS.
#
# kube-apiserver is built from a throw-away module that requires k8s.io/kubernetes and turns each of
# its "=> ./staging/src/k8s.io/X" replace lines into "k8s.io/X => k8s.io/X v0.<minor>.<patch>":
# k8s.io/kubernetes is not meant to be imported, so this is the documented way to build one of
# its commands outside its own tree.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.36.3}   # the pin of kube-apiserver
ETCD_VERSION=${ETCD_VERSION:-v3.6.8}    # the pin of etcd (the version kube-apiserver pins)
TESTBIN_DIR=${TESTBIN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/bin/testbin}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

# `testbin.sh capi` builds Cluster API's controllers for the test bed (hack/capi, a module of its
# own whose go.mod holds the pins) into a folder named after a hash of its sources, so that a build
# happens once per pin or change, and prints the binary's path.
if [[ "${1:-}" == "capi" ]]; then
  hash=$(cat "$ROOT"/hack/capi/go.mod "$ROOT"/hack/capi/go.sum "$ROOT"/hack/capi/*.go | sha256sum | cut -c1-12)
  bin="$TESTBIN_DIR/capi-$hash/capi"
  if [[ ! -x "$bin" ]]; then
    echo "testbin: building Cluster API's controllers for the test bed (once per pin; a few minutes cold)" >&2
    mkdir -p "$(dirname "$bin")"
    (cd "$ROOT/hack/capi" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go build -trimpath -o "$bin.tmp" . && mv "$bin.tmp" "$bin")
  fi
  echo "$bin"
  exit 0
fi

out="$TESTBIN_DIR/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION"
# kube-apiserver must know its own version: Cluster API's controllers refuse a management cluster
# that reports v0.0.0. A binary built before the version was linked in is rebuilt (a relink).
versioned() { [[ -x "$out/kube-apiserver" ]] && "$out/kube-apiserver" --version 2>/dev/null | grep -q "$KUBE_VERSION"; }
if versioned && [[ -x "$out/etcd" ]] && [[ -x "$out/kube-controller-manager" ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"
log() { echo "testbin: $*" >&2; }

# Go must not look for another toolchain, whatever the modules say.
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

# build_main MODULE VERSION PACKAGE BINARY SIBLING_VERSION [LDFLAGS]
# Builds PACKAGE of MODULE@VERSION into $out/BINARY from a throw-away module that requires
# MODULE@VERSION. MODULE's own replace directives point into its repository ("./staging/...",
# "../api"), which a module proxy cannot serve; each becomes a requirement of the same module path at
# SIBLING_VERSION, the version those siblings were tagged with together.
build_main() {
  local module=$1 version=$2 pkg=$3 binary=$4 sibling=$5 ldflags=${6:-}
  local mod="$TESTBIN_DIR/.mod-$binary-$version" dir
  dir=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -n "$dir" ]] || { log "cannot download $module@$version"; exit 1; }
  mkdir -p "$mod"
  {
    echo "module driftd.local/testbin"
    echo
    echo "go $(sed -n 's/^go //p' "$dir/go.mod")"
    echo
    echo "require $module $version"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\([^ ]*\) => \.\.\{0,1\}/[^F].*$#\t\1 => \1 '"$sibling"'#p' "$dir/go.mod"
    echo ")"
  } >"$mod/go.mod"
  printf 'package testbin\n\nimport _ "%s"\n' "$pkg" >"$mod/tools.go"
  (cd "$mod" && go mod tidy >&2 && go build -trimpath -ldflags "$ldflags" -o "$out/$binary" "$pkg")
}

if [[ ! -x "$out/etcd" ]]; then
  log "building etcd $ETCD_VERSION (once for this pin)"
  build_main go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 etcd "$ETCD_VERSION"
fi

if ! versioned; then
  log "building kube-apiserver $KUBE_VERSION (once for this pin; a few minutes on 2 cores)"
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  vpkg=k8s.io/component-base/version
  build_main k8s.io/kubernetes "$KUBE_VERSION" k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "v0.${KUBE_VERSION#v1.}" \
    "-X $vpkg.gitVersion=$KUBE_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean"
fi

# The garbage collector deletes what an owner's deletion leaves (a Cluster's Secrets): without
# it, a cluster deleted and created again under the same name meets its predecessor's certificates.
if [[ ! -x "$out/kube-controller-manager" ]]; then
  log "building kube-controller-manager $KUBE_VERSION (once for this pin; a few minutes on 2 cores)"
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  vpkg=k8s.io/component-base/version
  build_main k8s.io/kubernetes "$KUBE_VERSION" k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager "v0.${KUBE_VERSION#v1.}" \
    "-X $vpkg.gitVersion=$KUBE_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean"
fi
echo "$out"
