#!/usr/bin/env bash
# Builds the real servers and tools the tests and the demo run (DESIGN.md §4) from the Go module
# proxy at pinned versions, into a per-machine cache outside the checkout. Idempotent: a component
# whose binary already exists for its pinned version is not rebuilt, so a second run is a no-op.
#
#   tests/infra/build-components.sh [component...]     (default: all)
#   PROVGATE_BIN_CACHE overrides the cache (default ${XDG_CACHE_HOME:-~/.cache}/provgate/bin)
#
# Prints the cache directory on its last line.
set -euo pipefail

CACHE="${PROVGATE_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/provgate/bin}"
mkdir -p "$CACHE"
# One build at a time per cache: a second caller (a parallel test run, another checkout) waits and then
# finds the binaries built, instead of compiling the same module beside it.
exec 9>"$CACHE/.lock"
flock 9
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

# name | version | how to build it
OPA_VERSION=v1.22.2
DISTRIBUTION_VERSION=v3.1.1
COSIGN_VERSION=v3.1.2
GGCR_VERSION=v0.22.1
SPIRE_VERSION=v1.15.3
TSA_VERSION=v2.1.3
# The private Sigstore of the keyless tests (../shared/reference/keyless-local-sigstore.md): the newest
# versions the module proxy serves that build with each other (rekor-tiles v2.4 needs Go 1.27).
FULCIO_VERSION=v1.8.8
TESSERACT_VERSION=v0.1.1
REKOR_TILES_VERSION=v2.3.0

log() { printf '[build-components] %s\n' "$*" >&2; }

# go_install NAME VERSION MODULE_PATH [env...]: go install into a private GOBIN, then move into the cache.
go_install() {
  local name=$1 version=$2 pkg=$3; shift 3
  local out="$CACHE/$name-$version"
  if [[ -x "$out" ]]; then return 0; fi
  log "building $name $version ($pkg)"
  local gobin; gobin=$(mktemp -d)
  env GOBIN="$gobin" "$@" go install "$pkg@$version"
  local built; built=$(find "$gobin" -maxdepth 1 -type f | head -n 1)
  mv "$built" "$out.tmp" && mv "$out.tmp" "$out"
  rm -rf "$gobin"
}

# A registry with the OCI 1.1 referrers API. zot is not served by the module proxy this machine
# reaches, so we build go-containerregistry's conformant in-memory registry with referrers enabled.
build_ggcr_registry() {
  local out="$CACHE/ggcr-registry-$GGCR_VERSION"
  if [[ -x "$out" ]]; then return 0; fi
  log "building ggcr-registry $GGCR_VERSION (referrers API on)"
  local src; src=$(mktemp -d)
  cp "$(dirname "$0")/ggcr-registry/main.go" "$src/main.go"
  (cd "$src" && go mod init provgate.local/ggcr-registry >/dev/null 2>&1 \
     && go get "github.com/google/go-containerregistry@$GGCR_VERSION" >/dev/null 2>&1 \
     && CGO_ENABLED=0 go build -trimpath -o "$out.tmp" . && mv "$out.tmp" "$out")
  rm -rf "$src"
}

# SPIRE: `go install` cannot be used because the proxy refuses the module's version list (the
# deprecation lookup fails), and it refuses the zip of one dependency that only the EJBCA
# UpstreamAuthority plugin imports. So we download the pinned module, copy it to a scratch dir,
# drop that one plugin from the server's catalog, and build from the module's own go.mod/go.sum.
build_spire() {
  local name=$1 pkg=${2:-./cmd/$1}
  local out="$CACHE/$name-$SPIRE_VERSION"
  if [[ -x "$out" ]]; then return 0; fi
  log "building $name $SPIRE_VERSION (without the EJBCA upstream authority plugin)"
  local dir; dir=$(go mod download -json "github.com/spiffe/spire@$SPIRE_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -n "$dir" && -d "$dir" ]] || { log "could not download github.com/spiffe/spire@$SPIRE_VERSION"; return 1; }
  local src; src=$(mktemp -d)
  cp -r "$dir/." "$src/" && chmod -R u+w "$src"
  sed -i -e '/upstreamauthority\/ejbca"/d' -e '/ejbca\.BuiltIn()/d' "$src/pkg/server/catalog/upstreamauthority.go"
  (cd "$src" && CGO_ENABLED=1 go build -trimpath -o "$out.tmp" "$pkg" && mv "$out.tmp" "$out")
  rm -rf "$src"
}

build() {
  case "$1" in
    opa) go_install opa "$OPA_VERSION" github.com/open-policy-agent/opa CGO_ENABLED=0 ;;
    registry) go_install registry "$DISTRIBUTION_VERSION" github.com/distribution/distribution/v3/cmd/registry CGO_ENABLED=0 ;;
    cosign) go_install cosign "$COSIGN_VERSION" github.com/sigstore/cosign/v3/cmd/cosign CGO_ENABLED=0 ;;
    ggcr-registry) build_ggcr_registry ;;
    spire-server) build_spire spire-server ;;
    spire-agent) build_spire spire-agent ;;
    timestamp-server) go_install timestamp-server "$TSA_VERSION" github.com/sigstore/timestamp-authority/v2/cmd/timestamp-server CGO_ENABLED=0 ;;
    oidc-discovery-provider) build_spire oidc-discovery-provider ./support/oidc-discovery-provider ;;
    fulcio) go_install fulcio "$FULCIO_VERSION" github.com/sigstore/fulcio CGO_ENABLED=0 ;;
    # Both log servers' binaries are called posix: go_install gives each its own GOBIN and name.
    tesseract) go_install tesseract "$TESSERACT_VERSION" github.com/transparency-dev/tesseract/cmd/tesseract/posix CGO_ENABLED=0 ;;
    rekor-tiles) go_install rekor-tiles "$REKOR_TILES_VERSION" github.com/sigstore/rekor-tiles/v2/cmd/rekor-server/posix CGO_ENABLED=0 ;;
    *) log "unknown component: $1"; return 2 ;;
  esac
}

ALL=(opa registry ggcr-registry cosign timestamp-server spire-server spire-agent oidc-discovery-provider
     fulcio tesseract rekor-tiles)
components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=("${ALL[@]}")
for c in "${components[@]}"; do build "$c"; done

# Stable names for the fixtures: symlink name -> name-version.
for f in "$CACHE"/*-v*; do
  [[ -x "$f" && "$f" != *.tmp ]] || continue
  base=$(basename "$f"); name=${base%-v*}
  ln -sfn "$base" "$CACHE/$name"
done
echo "$CACHE"
