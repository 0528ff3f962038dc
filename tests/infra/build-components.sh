#!/usr/bin/env bash
# Builds the real servers and tools the demo, the tests and the benchmarks run (DESIGN.md §4) from the Go
# module proxy at pinned versions, into a per-machine cache outside the checkout. Idempotent: a component
# whose binary (or data directory) already exists for its pinned version is not rebuilt, so a second run
# is a no-op and prints nothing but the cache directory.
#
#   tests/infra/build-components.sh [GROUP|COMPONENT]...      (default: test)
#
#   demo    what scripts/demo.py runs (README command 1)
#   test    everything the test suite runs (README command 2, CI)
#   bench   the test group, the load generator and the peers the benchmarks compare against
#   peers   Tekton Chains' controller and sigstore policy-controller's webhook (benchmarks only)
#   all     every component
#
#   PROVGATE_BIN_CACHE     the cache (default ${XDG_CACHE_HOME:-~/.cache}/provgate/bin)
#   PROVGATE_BUILD_JOBS    go build -p (default 2: kube-apiserver's link peaks near 2 GB at 2)
#
# One progress line per component built goes to stderr; the Go tool's output goes to
# CACHE/logs/NAME-VERSION.log, whose tail is shown if the build fails. Prints the cache directory on
# its last line (stdout). Needs Go 1.26+ and, for SPIRE's sqlite, gcc.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE="${PROVGATE_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/provgate/bin}"
JOBS="${PROVGATE_BUILD_JOBS:-2}"

declare -A VERSION=(
  [opa]=v1.22.2
  [registry]=v3.1.1                 # distribution: the registry without the referrers API
  [ggcr-registry]=v0.22.1           # go-containerregistry's registry: the one with it
  [cosign]=v3.1.2
  [timestamp-server]=v2.1.3
  [spire-server]=v1.15.3
  [spire-agent]=v1.15.3
  [oidc-discovery-provider]=v1.15.3
  [etcd]=v3.6.17                    # newest 3.6.x the proxy serves
  [kube-apiserver]=v1.36.5          # newest 1.36.x the proxy serves; its go.mod wants go 1.26.0
  [tekton-crds]=v1.15.1             # data: config/300-crds/ of github.com/tektoncd/pipeline
  [kustomize]=v5.8.2                # v5.8.3 wants go 1.27
  [fulcio]=v1.8.8
  [tesseract]=v0.1.1                # TesseraCT, POSIX storage
  [rekor-tiles]=v2.3.0              # Rekor v2, POSIX storage; v2.4 wants go 1.27
  [vegeta]=v12.13.0
  [chains-controller]=v0.26.0
  [policy-controller-webhook]=v0.14.0
)
declare -A GROUP=(
  [demo]="opa registry"
  [test]="opa registry ggcr-registry cosign timestamp-server spire-server spire-agent oidc-discovery-provider
          etcd kube-apiserver tekton-crds kustomize fulcio tesseract rekor-tiles"
  [peers]="chains-controller policy-controller-webhook"
)
GROUP[bench]="${GROUP[test]} vegeta ${GROUP[peers]}"
GROUP[all]=${GROUP[bench]}

die() { printf 'build-components: %s\n' "$*" >&2; exit 2; }

# -- recipes: each runs in its own subshell inside a scratch directory ($WORK), with all output going to
# -- the component's log file, and leaves its result at $OUT (a binary, or a directory for data).

# go_install PACKAGE: go install into a private GOBIN (binaries of different modules share names, e.g.
# both POSIX log servers are called "posix"), then rename into the cache.
go_install() {
  GOBIN="$WORK/bin" nice go install -p "$JOBS" -trimpath -ldflags "-s -w" "$1@$V"
  local built=("$WORK"/bin/*)
  mv "${built[0]}" "$OUT"
}

# module_build PACKAGE [REPLACE...]: go build PACKAGE@V as a tool of a throwaway main module. `go install
# pkg@version` refuses modules whose go.mod has replace directives, and a dependency's replaces are
# ignored, so the main module repeats the ones the build needs (REPLACE is old=new@version).
module_build() {
  local pkg=$1; shift
  go mod init provgate.local/build
  if [[ $# -gt 0 ]]; then go mod edit "${@/#/-replace=}"; fi
  go get -tool "$pkg@$V"
  CGO_ENABLED=0 nice go build -p "$JOBS" -trimpath -ldflags "-s -w ${LDFLAGS:-}" -o "$OUT" "$pkg"
}

# mod_field MODULE@VERSION FIELD: a field of `go mod download -json` (downloads the module).
mod_field() {
  go mod download -json "$1" | sed -n "s/^[[:space:]]*\"$2\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p"
}

# kube-apiserver: k/k's go.mod points every staging module (k8s.io/api, ...) at ./staging, which does not
# exist in the module zip; each becomes a replace to the published twin k8s.io/X@v0.MINOR.PATCH, the list
# read from that go.mod so it follows the version.
build_kube_apiserver() {
  local gomod staging=v0.${V#v1.} minor=${V#v1.}
  minor=${minor%%.*}
  gomod=$(mod_field "k8s.io/kubernetes@$V" GoMod)
  local replaces=()
  for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[A-Za-z0-9._-]*\) => \./staging/.*#\1#p' "$gomod"); do
    replaces+=("$m=$m@$staging")
  done
  [[ ${#replaces[@]} -gt 0 ]] || { echo "no staging modules found in $gomod"; return 1; }
  echo "replacing ${#replaces[@]} staging modules with their $staging twins"
  local built
  built=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$(mod_field "k8s.io/kubernetes@$V" Info)")
  local v=k8s.io/component-base/version  # what /version reports; module_build reads LDFLAGS
  local LDFLAGS="-X $v.gitVersion=$V -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
  LDFLAGS+=" -X $v.buildDate=$built"
  module_build k8s.io/kubernetes/cmd/kube-apiserver "${replaces[@]}"
}

# A registry with the OCI 1.1 referrers API. zot is not served by the module proxy this machine reaches,
# so we build go-containerregistry's conformant in-memory registry with referrers enabled.
build_ggcr_registry() {
  cp "$HERE/ggcr-registry/main.go" .
  go mod init provgate.local/ggcr-registry
  go get "github.com/google/go-containerregistry@$V"
  CGO_ENABLED=0 nice go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$OUT" .
}

# SPIRE: `go install` cannot be used because the proxy refuses the module's version list (the
# deprecation lookup fails), and it refuses the zip of one dependency that only the EJBCA
# UpstreamAuthority plugin imports. So we download the pinned module, copy it to the scratch dir,
# drop that one plugin from the server's catalog, and build from the module's own go.mod/go.sum.
build_spire() {
  local dir
  dir=$(mod_field "github.com/spiffe/spire@$V" Dir)
  [[ -n "$dir" && -d "$dir" ]] || { echo "could not download github.com/spiffe/spire@$V"; return 1; }
  cp -r "$dir/." src/ && chmod -R u+w src
  sed -i -e '/upstreamauthority\/ejbca"/d' -e '/ejbca\.BuiltIn()/d' src/pkg/server/catalog/upstreamauthority.go
  (cd src && CGO_ENABLED=1 nice go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$OUT" "$1")
}

# Tekton's CRDs as the release ships them: the module zip carries config/300-crds/.
fetch_tekton_crds() {
  local dir
  dir=$(mod_field "github.com/tektoncd/pipeline@$V" Dir)
  [[ -d "$dir/config/300-crds" ]] || { echo "no config/300-crds in github.com/tektoncd/pipeline@$V"; return 1; }
  mkdir "$OUT" && cp "$dir"/config/300-crds/*.yaml "$OUT"/ && chmod -R u+w "$OUT"
}

recipe() {
  case "$1" in
    opa) go_install github.com/open-policy-agent/opa ;;
    registry) CGO_ENABLED=0 go_install github.com/distribution/distribution/v3/cmd/registry ;;
    ggcr-registry) build_ggcr_registry ;;
    cosign) CGO_ENABLED=0 go_install github.com/sigstore/cosign/v3/cmd/cosign ;;
    timestamp-server) CGO_ENABLED=0 go_install github.com/sigstore/timestamp-authority/v2/cmd/timestamp-server ;;
    spire-server | spire-agent) build_spire "./cmd/$1" ;;
    oidc-discovery-provider) build_spire ./support/oidc-discovery-provider ;;
    etcd) module_build go.etcd.io/etcd/server/v3 ;;  # siblings are published at the same tag: no replaces
    kube-apiserver) build_kube_apiserver ;;
    tekton-crds) fetch_tekton_crds ;;
    kustomize) CGO_ENABLED=0 go_install sigs.k8s.io/kustomize/kustomize/v5 ;;
    fulcio) go_install github.com/sigstore/fulcio ;;
    tesseract) go_install github.com/transparency-dev/tesseract/cmd/tesseract/posix ;;
    rekor-tiles) go_install github.com/sigstore/rekor-tiles/v2/cmd/rekor-server/posix ;;
    vegeta) CGO_ENABLED=0 go_install github.com/tsenart/vegeta/v12 ;;
    # The peers' replace lines are their own go.mod's (kubernetes-testenv.md §V "Peers").
    chains-controller) module_build github.com/tektoncd/chains/cmd/controller \
      github.com/alibabacloud-go/cr-20160607=github.com/vdemeester/cr-20160607@v1.0.1 \
      github.com/golang/glog=github.com/jdolitsky/glog@v0.0.0-20220729172235-78744e90d087 ;;
    policy-controller-webhook) module_build github.com/sigstore/policy-controller/cmd/webhook \
      github.com/golang/glog=github.com/jdolitsky/glog@v0.0.0-20220729172235-78744e90d087 \
      k8s.io/code-generator=k8s.io/code-generator@v0.29.4 \
      k8s.io/kube-openapi=k8s.io/kube-openapi@v0.0.0-20231010175941-2dd684a91f00 ;;
    *) echo "no recipe for $1"; return 1 ;;
  esac
}

# -- what to build ---------------------------------------------------------------------------------------

[[ $# -gt 0 ]] || set -- test
wanted=()
for arg in "$@"; do
  if [[ -n "${GROUP[$arg]:-}" ]]; then
    # shellcheck disable=SC2206  # word splitting of the group's list is intended
    wanted+=(${GROUP[$arg]})
  elif [[ -n "${VERSION[$arg]:-}" ]]; then
    wanted+=("$arg")
  else
    die "unknown group or component '$arg' (groups: ${!GROUP[*]}; components: $(printf '%s\n' "${!VERSION[@]}" | sort | xargs))"
  fi
done

mkdir -p "$CACHE/logs"
# One build at a time per cache: a second caller (a parallel test run, another checkout) waits and then
# finds the components built, instead of compiling the same module beside it.
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
  printf 'build-components: waiting for another build into %s to finish ...\n' "$CACHE" >&2
  flock 9
fi

declare -A seen=()
todo=()
for c in "${wanted[@]}"; do
  [[ -z "${seen[$c]:-}" ]] || continue
  seen[$c]=1
  [[ -e "$CACHE/$c-${VERSION[$c]}" ]] || todo+=("$c")
done

if [[ ${#todo[@]} -gt 0 ]]; then
  command -v go >/dev/null || die "Go 1.26 or newer is needed to build ${todo[*]} (not found on PATH)"
  # A module that wants a newer Go stops the build with a clear error instead of downloading a toolchain.
  export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS="${GOFLAGS:--buildvcs=false}"
  n=0
  for c in "${todo[@]}"; do
    n=$((n + 1))
    V=${VERSION[$c]}
    OUT="$CACHE/$c-$V"
    logfile="$CACHE/logs/$c-$V.log"
    printf '[%d/%d] building %s %s — first run only ... ' "$n" "${#todo[@]}" "$c" "$V" >&2
    started=$SECONDS
    rm -rf "$OUT.tmp"
    WORK=$(mktemp -d)
    # In the background and waited for, so that `set -e` holds inside the recipe (it is ignored in a
    # subshell whose status is tested).
    (
      cd "$WORK" && mkdir src
      OUT="$OUT.tmp" recipe "$c"
    ) >"$logfile" 2>&1 </dev/null &
    if wait $!; then
      mv "$OUT.tmp" "$OUT"
      printf '%ds\n' $((SECONDS - started)) >&2
    else
      printf 'FAILED\n' >&2
      tail -n 25 "$logfile" | sed 's/^/    /' >&2
      chmod -R u+w "$WORK" 2>/dev/null || true
      rm -rf "$WORK" "$OUT.tmp"
      die "building $c $V failed; the whole log: $logfile"
    fi
    chmod -R u+w "$WORK" 2>/dev/null || true  # the module cache's copies are read-only
    rm -rf "$WORK"
  done
fi

# Stable names for the fixtures: NAME -> NAME-VERSION, for every component of its pinned version.
for c in "${!VERSION[@]}"; do
  if [[ -e "$CACHE/$c-${VERSION[$c]}" ]]; then ln -sfn "$c-${VERSION[$c]}" "$CACHE/$c"; fi
done
echo "$CACHE"
