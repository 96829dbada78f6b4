#!/usr/bin/env bash
# Prompt Defenders end-to-end suite on a local kind cluster, for laptops and CI with Docker.
#
#   e2e/run.sh [--keep] [--no-build] [-- TEST_FILTER...]
#
# 1. checks cargo (hack/kind-up.sh checks the rest: docker with buildx, kind >= v0.24,
#    kubectl, helm, and prints the Docker version, its image store and the nodes' platform);
# 2. runs hack/kind-up.sh, the kind walkthrough (README.md, docs/src/install.md), on the kind cluster `pd-e2e`
#    with its own kubeconfig file so your other contexts are never touched: creates the cluster
#    from kind-config.yaml (or reuses it), builds the operator and scanner images and loads
#    them and the probes' pinned curl image into every node with e2e/kind-images.sh (`docker
#    save --platform` + `kind load image-archive`; e2e/images.sh says why; no node ever pulls
#    from Docker Hub), installs the chart (defaults: serving reports on, so Ready means serving), creates
#    namespace acme-prod and the tenant's API-key Secret (key id `e2e`), applies
#    config/samples/, waits for ScanPolicy acme-chat to be Ready and sends one blocked and one
#    allowed prompt through its scanner Service;
# 3. installs metrics-server (for the HPA test) and creates a foreign namespace;
# 4. runs the kind suite (`cargo test -p pd-e2e --test e2e -- --test-threads=1`, without the
#    local probe_script:: tests) with PD_E2E=1.
# On failure it prints and saves diagnostics ($PD_E2E_ARTIFACTS) before deleting the cluster.
#
#   --keep       keep the cluster afterwards (and a failing test's objects, for kubectl);
#                otherwise it is deleted, also when it was reused
#   --no-build   do not rebuild the images (use what `docker images` has)
#   -- ARGS      passed to the test binary, e.g. `-- hpa` runs only the HPA test
#
# Environment: PD_E2E_CLUSTER (pd-e2e), PD_E2E_IMAGE_TAG (dev), PD_E2E_WORKDIR
# (~/.cache/prompt-defenders/e2e), PD_E2E_ARTIFACTS (<workdir>/artifacts), PD_E2E_PLATFORM
# (the nodes' platform, detected from `docker info`), PD_E2E_CURL_IMAGE, CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

# ── Pinned versions. kind and its node image are pinned in hack/kind-up.sh. ────────────────
METRICS_SERVER_VERSION=v0.7.2
# Must match DEFAULT_CURL_IMAGE in e2e/src/probe.rs and CURL_IMAGE in hack/kind-up.sh (or
# export PD_E2E_CURL_IMAGE).
CURL_IMAGE=${PD_E2E_CURL_IMAGE:-curlimages/curl:8.11.1}

CLUSTER=${PD_E2E_CLUSTER:-pd-e2e}
IMAGE_TAG=${PD_E2E_IMAGE_TAG:-dev}
RELEASE=prompt-defenders
RELEASE_NS=prompt-defenders-system
# What config/samples/ expects: the Tenant `acme` allows namespace acme-prod, its clients are
# Pods there labelled promptdefenders.io/client=true, its API keys are Secret acme-scanner-keys.
SAMPLES_NS=acme-prod
SAMPLE_POLICY=acme-chat
# The API key id the probes read from Secret acme-scanner-keys (e2e/src/probe.rs).
KEY_ID=e2e
FOREIGN_NS=pd-e2e-foreign
WORKDIR=${PD_E2E_WORKDIR:-$HOME/.cache/prompt-defenders/e2e}
ARTIFACTS=${PD_E2E_ARTIFACTS:-$WORKDIR/artifacts}
export KUBECONFIG="$WORKDIR/kubeconfig-$CLUSTER"

keep=0
build=1
test_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1 ;;
    --no-build) build=0 ;;
    --) shift; test_args=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

step() { printf '\n==> %s\n' "$*"; }
die() { echo "error: $*" >&2; exit 1; }
started=$(date +%s)

# ── Diagnostics and teardown ──────────────────────────────────────────────────────────────
cluster_up=0
diagnostics() {
  mkdir -p "$ARTIFACTS"
  echo
  echo "==> diagnostics (full set in $ARTIFACTS)"
  local k=(kubectl --request-timeout=20s)
  {
    "${k[@]}" get nodes -o wide
    "${k[@]}" get pods -A -o wide
  } > "$ARTIFACTS/pods.txt" 2>&1 || true
  "${k[@]}" get events -A --sort-by=.lastTimestamp > "$ARTIFACTS/events.txt" 2>&1 || true
  "${k[@]}" get tenants,rulepacks,scanpolicies -A -o yaml > "$ARTIFACTS/custom-resources.yaml" 2>&1 || true
  "${k[@]}" get deployments,replicasets,services,endpointslices,networkpolicies,hpa,pdb,configmaps,jobs \
    -n "$SAMPLES_NS" -o wide > "$ARTIFACTS/children.txt" 2>&1 || true
  "${k[@]}" describe hpa -n "$SAMPLES_NS" > "$ARTIFACTS/hpa.txt" 2>&1 || true
  "${k[@]}" top pods -A > "$ARTIFACTS/top.txt" 2>&1 || true
  helm status "$RELEASE" -n "$RELEASE_NS" > "$ARTIFACTS/helm-status.txt" 2>&1 || true
  local ns pod
  for ns in "$RELEASE_NS" "$SAMPLES_NS" "$FOREIGN_NS"; do
    for pod in $("${k[@]}" get pods -n "$ns" -o name 2>/dev/null); do
      "${k[@]}" logs -n "$ns" "$pod" --all-containers --prefix --timestamps \
        > "$ARTIFACTS/logs-$ns-${pod#pod/}.txt" 2>&1 || true
      "${k[@]}" logs -n "$ns" "$pod" --all-containers --prefix --previous \
        >> "$ARTIFACTS/logs-$ns-${pod#pod/}.txt" 2>/dev/null || true
    done
  done
  kind export logs "$ARTIFACTS/kind" --name "$CLUSTER" > /dev/null 2>&1 || true

  echo "--- policy status"
  "${k[@]}" get scanpolicies,rulepacks -A -o wide 2>&1 || true
  "${k[@]}" get scanpolicies -A \
    -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}: {.status}{"\n"}{end}' 2>&1 || true
  echo "--- pods"
  cat "$ARTIFACTS/pods.txt" 2>/dev/null || true
  echo "--- recent events"
  tail -n 40 "$ARTIFACTS/events.txt" 2>/dev/null || true
  echo "--- operator logs (last 100 lines per pod)"
  for pod in $("${k[@]}" get pods -n "$RELEASE_NS" -o name 2>/dev/null); do
    "${k[@]}" logs -n "$RELEASE_NS" "$pod" --all-containers --prefix --tail=100 2>&1 || true
  done
}

finish() {
  local rc=$?
  trap - EXIT
  if [ "$rc" -ne 0 ] && [ "$cluster_up" = 1 ]; then
    diagnostics || true
  fi
  if [ "$cluster_up" = 1 ]; then
    if [ "$keep" = 1 ]; then
      printf '\nCluster %s kept. Use it with:\n  export KUBECONFIG=%s\nDelete it with: kind delete cluster --name %s\n' \
        "$CLUSTER" "$KUBECONFIG" "$CLUSTER"
    else
      step "deleting cluster $CLUSTER"
      kind delete cluster --name "$CLUSTER" || true
    fi
  fi
  if [ "$rc" -eq 0 ]; then
    printf '\ne2e passed in %ss\n' "$(( $(date +%s) - started ))"
  else
    printf '\ne2e FAILED (exit %s) after %ss\n' "$rc" "$(( $(date +%s) - started ))" >&2
  fi
  exit "$rc"
}
trap finish EXIT

# ── 1. Tools ──────────────────────────────────────────────────────────────────────────────
step "tools"
command -v cargo > /dev/null 2>&1 || die "cargo is not installed (the tests are a Rust crate; hack/kind-up.sh checks docker, kind, kubectl and helm)"
cargo --version

# ── 2. Cluster, images, chart, samples: hack/kind-up.sh ───────────────────────────────────
no_build=()
if [ "$build" = 0 ]; then no_build=(--no-build); fi
mkdir -p "$WORKDIR"
step "hack/kind-up.sh --cluster $CLUSTER --tag $IMAGE_TAG ${no_build[*]}"
# From here on a failure saves diagnostics and deletes the cluster (also a reused one).
cluster_up=1
PD_E2E_WORKDIR="$WORKDIR" \
  hack/kind-up.sh --cluster "$CLUSTER" --tag "$IMAGE_TAG" --key-id "$KEY_ID" --curl-image "$CURL_IMAGE" \
  ${no_build[@]+"${no_build[@]}"}

# ── 3. metrics-server and the foreign namespace ───────────────────────────────────────────
step "metrics-server $METRICS_SERVER_VERSION"
# kind's kubelets serve self-signed certificates, hence --kubelet-insecure-tls. Test clusters only.
kubectl apply -f "https://github.com/kubernetes-sigs/metrics-server/releases/download/$METRICS_SERVER_VERSION/components.yaml"
if ! kubectl -n kube-system get deployment metrics-server -o jsonpath='{.spec.template.spec.containers[0].args}' \
    | grep -c -- --kubelet-insecure-tls > /dev/null; then
  kubectl -n kube-system patch deployment metrics-server --type=json \
    -p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--kubelet-insecure-tls"}]'
fi
kubectl -n kube-system rollout status deployment/metrics-server --timeout=180s

step "foreign namespace $FOREIGN_NS"
kubectl create namespace "$FOREIGN_NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$FOREIGN_NS" promptdefenders.io/e2e=true --overwrite

# ── 4. Tests ──────────────────────────────────────────────────────────────────────────────
step "cargo test -p pd-e2e"
PD_E2E=1 PD_E2E_KEEP_ON_FAILURE="$keep" PD_E2E_CURL_IMAGE="$CURL_IMAGE" \
  PD_E2E_NAMESPACE="$SAMPLES_NS" PD_E2E_POLICY="$SAMPLE_POLICY" PD_E2E_FOREIGN_NAMESPACE="$FOREIGN_NS" \
  cargo test -p pd-e2e --locked --test e2e -- --test-threads=1 --nocapture --skip probe_script:: \
  ${test_args[@]+"${test_args[@]}"}
