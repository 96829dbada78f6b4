#!/usr/bin/env bash
# Regenerates every generated file of the repository, or with --check fails when any of them
# would change (what .ci/run calls). One place that knows the generators and their order:
#
#   crds/*.yaml, charts/prompt-defenders/crds/   pd-operator crdgen (the CRD types)
#   deploy/install.yaml                          hack/render-install.sh (crds/ + the chart; Helm)
#   scanner/openapi.json                         pd-scanner openapi (the scan API's types)
#   docs/src/api-reference.md                    docs/gen_api.py (from scanner/openapi.json)
#   docs/src/rule-packs.md, detector table       the detector registry (engine/src/detectors/)
#   operator/tests/golden/, engine/tests/golden/ the golden tests (UPDATE_GOLDEN=1)
#
#   hack/regen.sh            write them all; then review `git diff` (goldens above all)
#   hack/regen.sh --check    write nothing; list what is stale and exit 1 if anything is
#
# Helm: $HELM, else the one .ci/chart keeps in its cache (~/.cache/prompt-defenders/helm/*/helm),
# else `helm` on PATH. Without any, --check skips deploy/install.yaml with a warning (.ci/chart
# checks it with the Helm it pins) and a write stops with an error.
#
# --check leaves the goldens and the detector table to `cargo test --workspace`, whose tests
# compare them (CI runs those anyway): checking them here would run the same tests twice.
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: hack/regen.sh [--check]" >&2; exit 2 ;;
esac

cache="${PD_CACHE:-$HOME/.cache/prompt-defenders}"
if [ -z "${HELM:-}" ]; then
  HELM=$(ls "$cache"/helm/*/helm 2>/dev/null | head -n 1 || true)
  [ -n "$HELM" ] || HELM=$(command -v helm || true)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stale=()

# same GENERATED COMMITTED: records COMMITTED as stale when it differs from GENERATED.
same() {
  if ! diff -q "$2" "$1" >/dev/null 2>&1; then
    stale+=("$2")
  fi
}

step() { printf '==> %s\n' "$*"; }

step "CRDs (pd-operator crdgen)"
if $check; then
  # crdgen says "wrote <file>" on stderr for each file; only a failure is worth showing here.
  cargo run --quiet --locked -p pd-operator -- crdgen --dir "$work/crds" 2>"$work/crdgen.log" \
    || { cat "$work/crdgen.log" >&2; exit 1; }
  for f in "$work"/crds/*.yaml; do
    same "$f" "crds/$(basename "$f")"
    same "$f" "charts/prompt-defenders/crds/$(basename "$f")"
  done
else
  cargo run --quiet --locked -p pd-operator -- crdgen
fi

step "deploy/install.yaml (hack/render-install.sh)"
if [ -z "$HELM" ]; then
  if $check; then
    echo "warning: no Helm found (set HELM); deploy/install.yaml not checked here" >&2
  else
    echo "error: no Helm found: set HELM, or run .ci/chart once to fetch the pinned one" >&2
    exit 1
  fi
elif $check; then
  HELM="$HELM" bash hack/render-install.sh "$work/install.yaml" >/dev/null
  same "$work/install.yaml" deploy/install.yaml
else
  HELM="$HELM" bash hack/render-install.sh
fi

step "scanner/openapi.json (pd-scanner openapi) and docs/src/api-reference.md (docs/gen_api.py)"
cargo run --quiet --locked -p pd-scanner -- openapi > "$work/openapi.json"
if $check; then
  same "$work/openapi.json" scanner/openapi.json
  python3 docs/gen_api.py --check >/dev/null 2>&1 || stale+=(docs/src/api-reference.md)
else
  cp "$work/openapi.json" scanner/openapi.json
  python3 docs/gen_api.py
fi

if ! $check; then
  step "goldens and the detector table (UPDATE_GOLDEN=1)"
  UPDATE_GOLDEN=1 cargo test --quiet --locked -p pd-operator --test it golden:: >/dev/null
  UPDATE_GOLDEN=1 cargo test --quiet --locked -p pd-engine --test it golden:: >/dev/null
  UPDATE_GOLDEN=1 cargo test --quiet --locked -p pd-engine --lib detectors::tests::docs_table >/dev/null
  git status --short -- crds charts/prompt-defenders/crds deploy scanner/openapi.json \
    docs/src operator/tests/golden engine/tests/golden
  exit 0
fi

if [ ${#stale[@]} -gt 0 ]; then
  printf 'stale generated file: %s\n' "${stale[@]}" >&2
  echo "run hack/regen.sh and commit the result" >&2
  exit 1
fi
echo "generated files: up to date"
