#!/usr/bin/env bash
# Prompt Defenders end-to-end suite on a local kind cluster, for laptops and CI with Docker.
#
#   e2e/run.sh [--keep] [--no-build] [-- TEST_FILTER...]
#
# 1. checks the tools (docker with buildx, kind >= v0.24, kubectl, helm, cargo) and prints
#    the Docker version, its image store and the nodes' platform;
# 2. creates the kind cluster `pd-e2e` from kind-config.yaml (or reuses it if it exists), with
#    its own kubeconfig file so your other contexts are never touched;
# 3. builds the operator and scanner images, pulls the pinned curl image the test probes use
#    for the nodes' platform, and loads all three into every node with e2e/kind-images.sh
#    (`docker save --platform` + `kind load image-archive`; e2e/images.sh says why), so no node
#    ever pulls from Docker Hub. The README's "Step by step on kind" runs the same script;
# 4. installs metrics-server (for the HPA test) and the Helm chart;
# 5. creates what the samples need (namespace acme-prod, the tenant's API-key Secret, a foreign
#    namespace), applies config/samples/ and waits for ScanPolicy acme-chat to be Ready;
# 6. runs `cargo test -p pd-e2e -- --test-threads=1` with PD_E2E=1.
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
# shellcheck source=e2e/images.sh
. e2e/images.sh

# ── Pinned versions: bump them here (and KIND_VERSION in .github/workflows/e2e.yml). ────────
KIND_VERSION=v0.29.0
# The image kind v0.29.0 was released with for Kubernetes v1.33.1; kind requires the digest.
NODE_IMAGE=kindest/node:v1.33.1@sha256:050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f
METRICS_SERVER_VERSION=v0.7.2
# Must match DEFAULT_CURL_IMAGE in e2e/src/probe.rs (or export PD_E2E_CURL_IMAGE).
CURL_IMAGE=${PD_E2E_CURL_IMAGE:-curlimages/curl:8.11.1}

CLUSTER=${PD_E2E_CLUSTER:-pd-e2e}
IMAGE_TAG=${PD_E2E_IMAGE_TAG:-dev}
RELEASE=prompt-defenders
RELEASE_NS=prompt-defenders-system
# What config/samples/ expects: the Tenant `acme` allows namespace acme-prod, its clients are
# Pods there labelled promptdefenders.io/client=true, its API keys are Secret acme-scanner-keys.
SAMPLES_NS=acme-prod
SAMPLE_POLICY=acme-chat
KEYS_SECRET=acme-scanner-keys
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
for tool in docker kind kubectl helm cargo; do
  command -v "$tool" > /dev/null 2>&1 || die "$tool is not installed (needed: docker, kind $KIND_VERSION, kubectl, helm 3.8 or newer, cargo)"
done
docker info > /dev/null 2>&1 || die "docker is installed but the daemon does not answer (is Docker running? are you in the docker group?)"
if [ "$build" = 1 ]; then
  docker buildx version > /dev/null 2>&1 \
    || die "docker buildx is not installed (the Dockerfile needs BuildKit; install the docker-buildx plugin, or use --no-build with images you built yourself)"
fi
platform=$(e2e_platform)
e2e_docker_summary "$platform"
if [ "$platform" != linux/amd64 ]; then
  echo "warning: the images hold x86_64 binaries (Dockerfile: x86_64-unknown-linux-musl); $platform nodes can only run them under emulation"
fi
kind_version=$(kind version | awk '{print $2}')
echo "kind $kind_version (pinned $KIND_VERSION), $(kubectl version --client 2>/dev/null | head -n 1), helm $(helm version --short), $(cargo --version)"
# NetworkPolicy enforcement arrived in kind v0.24.0; older kinds pass NetworkPolicies through
# unenforced and the isolation test would fail for the wrong reason.
IFS=. read -r kind_major kind_minor _ <<< "${kind_version#v}"
if [ "${kind_major:-0}" -eq 0 ] && [ "${kind_minor:-0}" -lt 24 ]; then
  die "kind $kind_version does not enforce NetworkPolicy; install kind $KIND_VERSION (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
fi
[ "$kind_version" = "$KIND_VERSION" ] || echo "warning: kind $kind_version is not the pinned $KIND_VERSION; continuing"

# ── 2. Cluster ────────────────────────────────────────────────────────────────────────────
mkdir -p "$WORKDIR"
reused=0
if kind get clusters 2> /dev/null | grep -qx "$CLUSTER"; then
  step "reusing kind cluster $CLUSTER"
  reused=1
  kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG"
else
  step "creating kind cluster $CLUSTER ($NODE_IMAGE)"
  kind create cluster --name "$CLUSTER" --config kind-config.yaml --image "$NODE_IMAGE" \
    --kubeconfig "$KUBECONFIG" --wait 180s
fi
cluster_up=1
kubectl cluster-info
kubectl wait --for=condition=Ready nodes --all --timeout=180s

# ── 3. Images ─────────────────────────────────────────────────────────────────────────────
# The probe Pods' curl image comes from Docker Hub once, here, and reaches the nodes the same
# way as ours: the tests never depend on a registry (the operator runs with pullPolicy Never,
# the scanners and the probes with IfNotPresent, and every node has their images).
no_build=()
if [ "$build" = 1 ]; then
  step "building and loading images (tag $IMAGE_TAG, $platform): e2e/kind-images.sh"
else
  step "loading images (tag $IMAGE_TAG, $platform): e2e/kind-images.sh --no-build"
  no_build=(--no-build)
fi
PD_E2E_PLATFORM="$platform" PD_E2E_WORKDIR="$WORKDIR" \
  e2e/kind-images.sh --cluster "$CLUSTER" --tag "$IMAGE_TAG" ${no_build[@]+"${no_build[@]}"} "$CURL_IMAGE"

# ── 4. metrics-server and the chart ───────────────────────────────────────────────────────
step "metrics-server $METRICS_SERVER_VERSION"
# kind's kubelets serve self-signed certificates, hence --kubelet-insecure-tls. Test clusters only.
kubectl apply -f "https://github.com/kubernetes-sigs/metrics-server/releases/download/$METRICS_SERVER_VERSION/components.yaml"
if ! kubectl -n kube-system get deployment metrics-server -o jsonpath='{.spec.template.spec.containers[0].args}' \
    | grep -q -- --kubelet-insecure-tls; then
  kubectl -n kube-system patch deployment metrics-server --type=json \
    -p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--kubelet-insecure-tls"}]'
fi
kubectl -n kube-system rollout status deployment/metrics-server --timeout=180s

step "namespaces and the tenant's API key"
for ns in "$SAMPLES_NS" "$FOREIGN_NS"; do
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
done
kubectl label namespace "$FOREIGN_NS" promptdefenders.io/e2e=true --overwrite
# One key, id `e2e`, random per cluster. Kept when the cluster is reused: running scanners
# read their keys at start.
if ! kubectl -n "$SAMPLES_NS" get secret "$KEYS_SECRET" > /dev/null 2>&1; then
  token=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
  kubectl -n "$SAMPLES_NS" create secret generic "$KEYS_SECRET" --from-literal="e2e=$token"
  unset token
fi

step "helm upgrade --install $RELEASE"
helm upgrade --install "$RELEASE" charts/prompt-defenders \
  --namespace "$RELEASE_NS" --create-namespace \
  --set operator.image.tag="$IMAGE_TAG" \
  --set scanner.image.tag="$IMAGE_TAG" \
  --set operator.image.pullPolicy=Never \
  --set operator.scannerReportsServing=true \
  --wait --timeout 5m
if [ "$reused" = 1 ] && [ "$build" = 1 ]; then
  # Same tag, new image: restart what runs it.
  kubectl -n "$RELEASE_NS" rollout restart deployment
  kubectl -n "$RELEASE_NS" rollout status deployment --timeout=180s
  kubectl -n "$SAMPLES_NS" rollout restart deployment -l app.kubernetes.io/managed-by=pd-operator || true
fi
crds=(tenants.promptdefenders.io rulepacks.promptdefenders.io scanpolicies.promptdefenders.io)
if ! kubectl get crd "${crds[@]}" > /dev/null 2>&1; then
  echo "the chart installed no CRDs; applying crds/"
  kubectl apply --server-side -f crds/
fi
kubectl wait --for=condition=Established "${crds[@]/#/crd/}" --timeout=60s

# ── 5. Samples ────────────────────────────────────────────────────────────────────────────
step "applying config/samples/ in $SAMPLES_NS"
# -n: the baseline RulePack has no namespace of its own, and acme extends it from acme-prod.
kubectl apply -n "$SAMPLES_NS" -f config/samples/
kubectl wait --for=condition=Ready "scanpolicy/$SAMPLE_POLICY" -n "$SAMPLES_NS" --timeout=300s
kubectl get scanpolicies,rulepacks -n "$SAMPLES_NS" -o wide

# ── 6. Tests ──────────────────────────────────────────────────────────────────────────────
step "cargo test -p pd-e2e"
PD_E2E=1 PD_E2E_KEEP_ON_FAILURE="$keep" PD_E2E_CURL_IMAGE="$CURL_IMAGE" \
  PD_E2E_NAMESPACE="$SAMPLES_NS" PD_E2E_POLICY="$SAMPLE_POLICY" PD_E2E_FOREIGN_NAMESPACE="$FOREIGN_NS" \
  cargo test -p pd-e2e --locked --test e2e -- --test-threads=1 --nocapture ${test_args[@]+"${test_args[@]}"}
