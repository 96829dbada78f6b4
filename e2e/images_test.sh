#!/usr/bin/env bash
# Tests of e2e/images.sh, e2e/kind-images.sh and hack/kind-up.sh (the setup e2e/run.sh and the
# kind walkthrough in README.md and docs/src/install.md run), without Docker, kind or a cluster: stub `docker`, `kind`,
# `kubectl`, `helm` and `uname` commands on PATH record every call, and each case checks the
# exact commands, the exit status and the messages. Run by .ci/e2e; `bash e2e/images_test.sh`.
#
# Each case runs the function in a fresh `bash -euo pipefail`, called as a plain command the
# way run.sh calls it, so an unguarded failing command inside it would show here too.
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
stubs="$tmp/bin"
mkdir -p "$stubs"

# ── Stubs. They append "<command> <args…>" to $STUB_LOG; behaviour comes from STUB_* variables.
cat > "$stubs/docker" << 'EOF'
#!/usr/bin/env bash
echo "docker $*" >> "$STUB_LOG"
case "$1 ${2-} ${3-} ${4-}" in
  "info   ")
    echo "Server: stub" ;;
  "info --format {{.OSType}}/{{.Architecture}} ")
    [ "${STUB_INFO_FAIL:-0}" = 1 ] && { echo "Cannot connect to the Docker daemon" >&2; exit 1; }
    echo "${STUB_INFO_PLATFORM:-linux/x86_64}" ;;
  "info --format {{json .DriverStatus}} ")
    echo "${STUB_DRIVER_STATUS:-[[\"driver-type\",\"io.containerd.snapshotter.v1\"]]}" ;;
  "version --format {{.Server.APIVersion}} ")
    [ -n "${STUB_API-1.52}" ] || exit 1
    echo "${STUB_API-1.52}" ;;
  "version --format "*)
    echo "29.1.3 (API ${STUB_API-1.52})" ;;
  "image inspect "*)
    for m in ${STUB_MISSING:-}; do [ "$m" = "$3" ] && { echo "Error: No such image: $3" >&2; exit 1; }; done
    echo '[{}]' ;;
  "pull "*)
    [ "${STUB_PULL_FAIL:-0}" = 1 ] && { echo "toomanyrequests: You have reached your unauthenticated pull rate limit." >&2; exit 1; }
    echo "pulled" ;;
  "save "*)
    out= image=
    while [ $# -gt 0 ]; do
      case "$1" in
        -o) out=$2; shift ;;
        --platform) shift ;;
        save) ;;
        *) image=$1 ;;
      esac
      shift
    done
    [ "$image" = "${STUB_SAVE_FAIL:-}" ] && { echo "Error response from daemon: no suitable export target found for platform" >&2; : > "$out"; exit 1; }
    echo "archive of $image" > "$out" ;;
  "buildx version "*)
    [ "${STUB_NO_BUILDX:-0}" = 1 ] && { echo "docker: 'buildx' is not a docker command." >&2; exit 1; }
    echo "github.com/docker/buildx v0.20.0" ;;
  "buildx build "*)
    [ "${STUB_BUILD_FAIL:-0}" = 1 ] && { echo "ERROR: failed to solve" >&2; exit 1; }
    echo "built" ;;
  "exec "*)
    # docker exec NODE crictl inspecti IMAGE
    [ "$2 $5" = "${STUB_NOT_ON_NODE:-}" ] && { echo "no such image \"$5\" present" >&2; exit 1; }
    echo '{"status":{}}' ;;
  *) echo "docker stub: unexpected call: docker $*" >&2; exit 99 ;;
esac
EOF
cat > "$stubs/kind" << 'EOF'
#!/usr/bin/env bash
echo "kind $*" >> "$STUB_LOG"
case "$1 ${2-}" in
  "version ")
    echo "kind ${STUB_KIND_VERSION:-v0.29.0} go1.24.2 linux/amd64" ;;
  "get clusters")
    for c in ${STUB_CLUSTERS:-}; do echo "$c"; done ;;
  "create cluster" | "export kubeconfig") ;;
  "get nodes")
    for n in ${STUB_NODES-pd-e2e-control-plane pd-e2e-worker pd-e2e-worker2}; do echo "$n"; done ;;
  "load image-archive")
    archive=$5
    [ -s "$archive" ] || { echo "ERROR: failed to load image: open $archive: no such file" >&2; exit 1; }
    # Which image the archive holds: proves each archive is loaded right after its own save.
    echo "  (archive holds: $(cat "$archive"))" >> "$STUB_LOG"
    grep -qxF "archive of ${STUB_KIND_LOAD_FAIL:-none}" "$archive" && {
      echo "ERROR: failed to load image: ctr: content digest sha256:0123: not found" >&2; exit 1; }
    exit 0 ;;
  *) echo "kind stub: unexpected call: kind $*" >&2; exit 99 ;;
esac
EOF
cat > "$stubs/kubectl" << 'EOF'
#!/usr/bin/env bash
echo "kubectl $*" >> "$STUB_LOG"
args=" $* "
case "$args" in
  *" version --client "*) echo "Client Version: v1.33.1" ;;
  *" get secret "*) [ "${STUB_SECRET_EXISTS:-0}" = 1 ] || { echo "Error from server (NotFound)" >&2; exit 1; } ;;
  *" apply -f "*)
    # Which objects each applied file holds (and the Secret's key ids), for the checks.
    f=${args#* apply -f }
    f=${f%% *}
    [ -f "$f" ] || { echo "error: the path \"$f\" does not exist" >&2; exit 1; }
    kinds=$(sed -n 's/^kind: //p' "$f" | tr '\n' ' ')
    keys=$(sed -n '/^stringData:/{n;s/^ *\([^:]*\):.*/key id \1/p;}' "$f")
    echo "  (applies: $kinds$keys)" >> "$STUB_LOG" ;;
  *" logs "*)
    printf '%s\n' "${STUB_ANSWER_1-{\"verdict\":\"block\",\"score\":100\}}" "${STUB_ANSWER_2-{\"verdict\":\"allow\",\"score\":0\}}" ;;
  *) ;;
esac
EOF
cat > "$stubs/helm" << 'EOF'
#!/usr/bin/env bash
echo "helm $*" >> "$STUB_LOG"
[ "$1" != version ] || echo "v3.18.4+g0000000"
EOF
cat > "$stubs/uname" << 'EOF'
#!/usr/bin/env bash
echo "uname $*" >> "$STUB_LOG"
echo "${STUB_UNAME-x86_64}"
EOF
chmod +x "$stubs/docker" "$stubs/kind" "$stubs/kubectl" "$stubs/helm" "$stubs/uname"

failures=0
cases=0
fail() {
  echo "FAIL: $case_name: $*" >&2
  failures=$((failures + 1))
}

# run_case NAME SHELL-CODE [VAR=VALUE...]: runs SHELL-CODE (after sourcing e2e/images.sh) with
# the stubs first on PATH and the given variables; leaves $rc, $out, $err and $calls.
run_case() {
  case_name=$1
  local code=$2
  shift 2
  cases=$((cases + 1))
  : > "$tmp/log"
  rc=0
  env -u PD_E2E_PLATFORM PATH="$stubs:$PATH" STUB_LOG="$tmp/log" "$@" \
    bash -euo pipefail -c ". e2e/images.sh; $code" > "$tmp/out" 2> "$tmp/err" || rc=$?
  out=$(cat "$tmp/out")
  err=$(cat "$tmp/err")
  calls=$(cat "$tmp/log")
}
expect_rc() { [ "$rc" = "$1" ] || fail "exit status $rc, expected $1; stderr: $err"; }
expect_eq() { # expect_eq WHAT ACTUAL EXPECTED
  [ "$2" = "$3" ] || fail "$(printf '%s differs.\n--- expected\n%s\n--- actual\n%s' "$1" "$3" "$2")"
}

# ── Platform detection ────────────────────────────────────────────────────────────────────
check_platform() { # check_platform NAME EXPECTED VAR=VALUE...
  local want=$2 name=$1
  shift 2
  run_case "platform: $name" 'e2e_platform' "$@"
  expect_rc 0
  expect_eq "platform" "$out" "$want"
}
check_platform "x86_64 daemon" linux/amd64 STUB_INFO_PLATFORM=linux/x86_64
expect_eq "calls" "$calls" "docker info --format {{.OSType}}/{{.Architecture}}"
expect_eq "stderr" "$err" ""
check_platform "aarch64 daemon" linux/arm64 STUB_INFO_PLATFORM=linux/aarch64
check_platform "arm64 daemon" linux/arm64 STUB_INFO_PLATFORM=linux/arm64
check_platform "armv7l daemon" linux/arm/v7 STUB_INFO_PLATFORM=linux/armv7l
check_platform "s390x daemon" linux/s390x STUB_INFO_PLATFORM=linux/s390x
check_platform "override" linux/arm64 PD_E2E_PLATFORM=linux/arm64 STUB_INFO_PLATFORM=linux/x86_64
expect_eq "calls (the override asks nobody)" "$calls" ""
check_platform "docker info fails: uname -m" linux/arm64 STUB_INFO_FAIL=1 STUB_UNAME=aarch64
expect_eq "calls" "$calls" "$(printf '%s\n' "docker info --format {{.OSType}}/{{.Architecture}}" "uname -m")"
check_platform "unknown architecture: amd64 with a warning" linux/amd64 STUB_INFO_PLATFORM=linux/mips64
expect_eq "warning" "$err" "warning: could not tell the Docker host's architecture (mips64); assuming linux/amd64 (set PD_E2E_PLATFORM to override)"
check_platform "nothing answers: amd64 with a warning" linux/amd64 STUB_INFO_FAIL=1 STUB_UNAME=
[[ "$err" == *"assuming linux/amd64"* ]] || fail "no warning: $err"

# ── docker save --platform needs API 1.48 ─────────────────────────────────────────────────
for api_case in "1.52 0" "1.48 0" "2.0 0" "1.47 1" "1.41 1" "garbage 1" " 1"; do
  read -r api want <<< "$api_case" || true
  [ -n "${want:-}" ] || { want=$api; api=; }
  run_case "save takes --platform with API '${api}'" 'e2e_save_takes_platform' STUB_API="$api"
  expect_rc "$want"
done

# ── Pulling ───────────────────────────────────────────────────────────────────────────────
curl=curlimages/curl:8.11.1
run_case "pull: missing image is pulled for the platform" "e2e_pull_image linux/amd64 $curl" STUB_MISSING="$curl"
expect_rc 0
expect_eq "calls" "$calls" "$(printf '%s\n' "docker image inspect $curl" "docker pull --platform linux/amd64 $curl")"
run_case "pull: present image is not pulled again" "e2e_pull_image linux/amd64 $curl"
expect_rc 0
expect_eq "calls" "$calls" "docker image inspect $curl"
run_case "pull: failure names the image" "e2e_pull_image linux/arm64 $curl" STUB_MISSING="$curl" STUB_PULL_FAIL=1
expect_rc 1
expect_eq "stderr" "$(printf '%s\n' "$err" | grep '^error:')" \
  "error: could not pull $curl for linux/arm64 (Docker Hub rate limit? see \"Runner assumptions\" in docs/src/contributing/e2e.md: log in with docker login, or pull it yourself)"

# ── Loading ───────────────────────────────────────────────────────────────────────────────
op=ghcr.io/prompt-defenders/pd-operator:dev
sc=ghcr.io/prompt-defenders/pd-scanner:dev
dir="$tmp/archives"
op_tar="$dir/ghcr.io_prompt-defenders_pd-operator_dev.tar"
sc_tar="$dir/ghcr.io_prompt-defenders_pd-scanner_dev.tar"
curl_tar="$dir/curlimages_curl_8.11.1.tar"
load="e2e_load_images pd-e2e linux/amd64 '$dir' $op $sc $curl"
nodes=(pd-e2e-control-plane pd-e2e-worker pd-e2e-worker2)
# The calls for one image: save, load, check every node.
image_calls() { # image_calls SAVE_FLAGS IMAGE ARCHIVE
  printf '%s\n' "docker image inspect $2" "docker save $1-o $3 $2" \
    "kind load image-archive --name pd-e2e $3" "  (archive holds: archive of $2)"
  local n
  for n in "${nodes[@]}"; do printf '%s\n' "docker exec $n crictl inspecti $2"; done
}
prelude_calls=$(printf '%s\n' "docker version --format {{.Server.APIVersion}}" "kind get nodes --name pd-e2e")

run_case "load: Docker 29 (API 1.52): save --platform + kind load image-archive, checked on every node" "$load"
expect_rc 0
expect_eq "calls" "$calls" "$(printf '%s\n%s\n%s\n%s' "$prelude_calls" \
  "$(image_calls '--platform linux/amd64 ' "$op" "$op_tar")" \
  "$(image_calls '--platform linux/amd64 ' "$sc" "$sc_tar")" \
  "$(image_calls '--platform linux/amd64 ' "$curl" "$curl_tar")")"
expect_eq "stdout" "$out" "$(printf 'loading %s (linux/amd64) into kind cluster pd-e2e\n' "$op" "$sc" "$curl")"
expect_eq "stderr" "$err" ""
[[ "$calls" != *"load docker-image"* ]] || fail "kind load docker-image is used"
[ -z "$(ls -A "$dir")" ] || fail "archives left behind: $(ls "$dir")"

run_case "load: arm64 nodes get arm64 archives" "e2e_load_images pd-e2e linux/arm64 '$dir' $curl"
expect_rc 0
[[ "$calls" == *"docker save --platform linux/arm64 -o $curl_tar $curl"* ]] || fail "no arm64 save: $calls"

run_case "load: Docker 27 (API 1.47): plain docker save (its store is single-platform)" "$load" STUB_API=1.47
expect_rc 0
expect_eq "calls" "$calls" "$(printf '%s\n%s\n%s\n%s' "$prelude_calls" \
  "$(image_calls '' "$op" "$op_tar")" "$(image_calls '' "$sc" "$sc_tar")" "$(image_calls '' "$curl" "$curl_tar")")"

run_case "load: an image missing from Docker is named, nothing is loaded" "$load" STUB_MISSING="$op"
expect_rc 1
expect_eq "stderr" "$err" "error: image $op is not in Docker (build or pull it first; with --no-build run.sh uses what \`docker images\` has)"
expect_eq "calls" "$calls" "$(printf '%s\n' "$prelude_calls" "docker image inspect $op")"

run_case "load: docker save fails (e.g. no content for the platform): named, stops" "$load" STUB_SAVE_FAIL="$sc"
expect_rc 1
expect_eq "error" "$(printf '%s\n' "$err" | grep '^error:')" \
  "error: could not export $sc for linux/amd64 from Docker (\`docker save --platform linux/amd64 -o $sc_tar $sc\` failed; an image built without linux/amd64 content, or an attestation-only index? rebuild it with --provenance=false --sbom=false)"
[[ "$calls" == *"docker save --platform linux/amd64 -o $sc_tar $sc"* ]] || fail "scanner not saved: $calls"
[[ "$calls" != *"kind load image-archive --name pd-e2e $sc_tar"* ]] || fail "a failed save was loaded"
[[ "$calls" != *"$curl"* ]] || fail "went on after a failure"
[ ! -e "$sc_tar" ] || fail "the partial archive was left behind"

run_case "load: kind load fails (the upstream 'content digest not found'): named, stops" "$load" STUB_KIND_LOAD_FAIL="$curl"
expect_rc 1
expect_eq "error" "$(printf '%s\n' "$err" | grep '^error:')" \
  "error: kind could not load $curl into cluster pd-e2e (\`kind load image-archive --name pd-e2e $curl_tar\` failed)"
[[ "$err" == *"content digest sha256:0123: not found"* ]] || fail "kind's own message is not shown: $err"
[[ "$calls" != *"crictl inspecti $curl"* ]] || fail "checked the nodes after a failed load"
[ -z "$(ls -A "$dir")" ] || fail "archives left behind: $(ls "$dir")"

run_case "load: kind says ok but a node lacks the image: image and node named" "$load" STUB_NOT_ON_NODE="pd-e2e-worker2 $op"
expect_rc 1
expect_eq "stderr" "$err" "error: $op is not on node pd-e2e-worker2 after loading it into kind cluster pd-e2e (\`docker exec pd-e2e-worker2 crictl images\` lists what is)"
[[ "$calls" != *"$sc"* ]] || fail "went on after a failure"

run_case "load: a cluster without nodes is an error" "$load" STUB_NODES=
expect_rc 1
expect_eq "stderr" "$err" "error: kind cluster pd-e2e has no nodes; cannot load $op $sc $curl"

# ── e2e/kind-images.sh: build + load, the script run.sh and the kind walkthrough run ─────
build_calls() { # build_calls TAG: the two builds, scanner first
  local name
  for name in pd-scanner pd-operator; do
    printf '%s\n' "docker buildx build --load --provenance=false --sbom=false -f Dockerfile --target $name -t ghcr.io/prompt-defenders/$name:$1 ."
  done
}
kind_images_dir="$tmp/kind-images-work"
run_case "kind-images.sh: builds both images without attestations, loads them and the extras" \
  "e2e/kind-images.sh --cluster pd-demo $curl" PD_E2E_WORKDIR="$kind_images_dir"
expect_rc 0
expect_eq "builds" "$(printf '%s\n' "$calls" | grep 'buildx build')" "$(build_calls dev)"
# The extra image goes through e2e_pull_image (inspected; pulled only when missing, see above).
[[ "$calls" == *"docker image inspect $curl"$'\n'"docker version"* ]] || fail "the extra image is not checked before loading: $calls"
for image in "$op" "$sc" "$curl"; do
  archive="$kind_images_dir/images/$(printf '%s' "$image" | tr -c 'A-Za-z0-9._-' '_').tar"
  [[ "$calls" == *"kind load image-archive --name pd-demo $archive"* ]] || fail "$image is not loaded into pd-demo: $calls"
done
# Built before anything is loaded: a node never gets a stale image of the same tag.
last_build=$(printf '%s\n' "$calls" | grep -n 'buildx build' | tail -n 1 | cut -d: -f1)
first_load=$(printf '%s\n' "$calls" | grep -n 'kind load' | sed -n 1p | cut -d: -f1)
[ "$last_build" -lt "$first_load" ] || fail "loads before the last build"

run_case "kind-images.sh --no-build --tag: loads what Docker has, builds nothing" \
  "e2e/kind-images.sh --cluster pd-demo --tag t1 --no-build" PD_E2E_WORKDIR="$kind_images_dir"
expect_rc 0
[[ "$calls" != *"buildx"* ]] || fail "--no-build built: $calls"
[[ "$calls" == *"crictl inspecti ghcr.io/prompt-defenders/pd-operator:t1"* ]] || fail "tag t1 not loaded: $calls"

run_case "kind-images.sh without --cluster is a usage error" "e2e/kind-images.sh"
expect_rc 64
[[ "$err" == *"--cluster NAME is required"* ]] || fail "stderr: $err"
expect_eq "calls" "$calls" ""

run_case "kind-images.sh without buildx says so before doing anything" \
  "e2e/kind-images.sh --cluster pd-demo" STUB_NO_BUILDX=1
expect_rc 1
[[ "$err" == *"docker buildx is not installed"* ]] || fail "stderr: $err"
[[ "$calls" != *"kind "* ]] || fail "went on: $calls"

run_case "kind-images.sh: a failed build stops before loading" \
  "e2e/kind-images.sh --cluster pd-demo" STUB_BUILD_FAIL=1 PD_E2E_WORKDIR="$kind_images_dir"
expect_rc 1
[[ "$calls" != *"kind load"* ]] || fail "loaded after a failed build: $calls"

# ── hack/kind-up.sh: the walkthrough's steps, and run.sh's setup ─────────────────────────────────
kind_up_dir="$tmp/kind-up-work"
run_case "kind-up.sh: a new cluster from kind-config.yaml, images, chart, samples, two prompts" \
  "hack/kind-up.sh" PD_E2E_WORKDIR="$kind_up_dir" KUBECONFIG="$tmp/kubeconfig-demo"
expect_rc 0
expect_eq "kind create" "$(printf '%s\n' "$calls" | grep '^kind create cluster' || true)" \
  "kind create cluster --name pd-demo --config kind-config.yaml --image $(sed -n 's/^NODE_IMAGE=//p' hack/kind-up.sh) --kubeconfig $tmp/kubeconfig-demo --wait 180s"
expect_eq "builds" "$(printf '%s\n' "$calls" | grep 'buildx build')" "$(build_calls dev)"
[[ "$calls" == *"kind load image-archive --name pd-demo $kind_up_dir/images/curlimages_curl_8.11.1.tar"* ]] \
  || fail "the curl image is not loaded: $calls"
expect_eq "helm" "$(printf '%s\n' "$calls" | grep '^helm .*upgrade')" \
  "helm --kube-context kind-pd-demo upgrade --install prompt-defenders charts/prompt-defenders --namespace prompt-defenders-system --create-namespace --set operator.image.tag=dev --set scanner.image.tag=dev --set operator.image.pullPolicy=Never --wait --timeout 5m"
# Every kubectl call names the kind cluster's context: never the user's current one.
if printf '%s\n' "$calls" | grep '^kubectl ' | grep -v -e '^kubectl --context kind-pd-demo ' -e '^kubectl version --client'; then
  fail "kubectl without --context kind-pd-demo"
fi
# What is applied (the stub adds the kinds each file holds), with the directories cut off.
expect_eq "applies" "$(printf '%s\n' "$calls" | grep -A1 ' apply ' | grep -v '^--$' | sed 's|-f /[^ ]*/|-f |')" "$(printf '%s\n' \
  "kubectl --context kind-pd-demo apply -f namespace.yaml" "  (applies: Namespace )" \
  "kubectl --context kind-pd-demo apply -f secret.yaml" "  (applies: Secret key id demo)" \
  "kubectl --context kind-pd-demo apply -n acme-prod -f config/samples/" \
  "kubectl --context kind-pd-demo -n acme-prod wait --for=condition=Ready scanpolicy/acme-chat --timeout=300s" \
  "kubectl --context kind-pd-demo apply -f client-pod.yaml" "  (applies: Pod )")"
# In order: cluster, images, chart, samples, Ready, the client Pod's answers.
order=$(printf '%s\n' "$calls" | grep -nE '^kind create|buildx build .*pd-operator|^helm .*upgrade|apply -n acme-prod|condition=Ready scanpolicy|logs kind-up-client' | cut -d: -f1 | tr '\n' ' ')
expect_eq "step order (call numbers)" "$order" "$(tr ' ' '\n' <<< "$order" | grep . | sort -n | tr '\n' ' ')"
expect_eq "steps found" "$(wc -w <<< "$order" | tr -d ' ')" 6
[[ "$out" == *'-> {"verdict":"block"'*'-> {"verdict":"allow"'* ]] || fail "the answers are not shown: $out"
expect_eq "numbered steps printed" "$(printf '%s\n' "$out" | sed -n 's/^==> \([1-6]\)\. .*/\1/p' | tr -d '\n')" 123456
[[ "$calls" != *"rollout restart"* ]] || fail "a new cluster was restarted"
[ ! -e "$tmp/kubeconfig-demo" ] || fail "the stub kind wrote a kubeconfig?"

run_case "kind-up.sh: an existing cluster is reused, rebuilt images restarted, the Secret kept" \
  "hack/kind-up.sh --cluster pd-demo --tag t2" PD_E2E_WORKDIR="$kind_up_dir" STUB_CLUSTERS="other pd-demo" STUB_SECRET_EXISTS=1
expect_rc 0
[[ "$calls" != *"kind create"* ]] || fail "created an existing cluster: $calls"
[[ "$calls" == *"kind export kubeconfig --name pd-demo"* ]] || fail "no kubeconfig export: $calls"
[[ "$calls" == *"kubectl --context kind-pd-demo -n prompt-defenders-system rollout restart deployment"* ]] || fail "no restart: $calls"
[[ "$calls" != *"secret.yaml"* ]] || fail "the existing Secret was replaced: $calls"
[[ "$calls" == *"--set operator.image.tag=t2 --set scanner.image.tag=t2"* ]] || fail "tag t2 not installed: $calls"

run_case "kind-up.sh --no-build --set --key-id: no build, the value and key id passed" \
  "hack/kind-up.sh --cluster pd-e2e --no-build --key-id e2e --set operator.scannerReportsServing=false" \
  PD_E2E_WORKDIR="$kind_up_dir" STUB_NODES="pd-e2e-control-plane"
expect_rc 0
[[ "$calls" != *"buildx build"* ]] || fail "--no-build built: $calls"
[[ "$calls" == *"--set operator.image.pullPolicy=Never --set operator.scannerReportsServing=false --wait"* ]] || fail "--set not passed: $calls"
[[ "$calls" == *"(applies: Secret key id e2e)"* ]] || fail "key id e2e not used: $calls"

run_case "kind-up.sh: the harmless prompt blocked is a failure" \
  "hack/kind-up.sh" PD_E2E_WORKDIR="$kind_up_dir" STUB_ANSWER_2='{"verdict":"block"}'
expect_rc 1
expect_eq "error" "$(printf '%s\n' "$err" | grep '^error:')" "error: the harmless prompt was not allowed"

run_case "kind-up.sh: no answers at all is a failure" "hack/kind-up.sh" PD_E2E_WORKDIR="$kind_up_dir" STUB_ANSWER_1= STUB_ANSWER_2=
expect_rc 1
expect_eq "error" "$(printf '%s\n' "$err" | grep '^error:')" "error: the injection attempt was not blocked"

run_case "kind-up.sh: kind older than v0.24 (no NetworkPolicy) is refused before anything" \
  "hack/kind-up.sh" STUB_KIND_VERSION=v0.23.0
expect_rc 1
[[ "$err" == *"kind v0.23.0 does not enforce NetworkPolicy"* ]] || fail "stderr: $err"
[[ "$calls" != *"create cluster"* && "$calls" != *"buildx build"* ]] || fail "went on: $calls"

run_case "kind-up.sh --scan: only the client Pod" "hack/kind-up.sh --cluster pd-demo --scan 'say \"hi\"'"
expect_rc 0
[[ "$calls" != *"kind "* && "$calls" != *"helm "* ]] || fail "--scan touched more than the client Pod: $calls"
[[ "$calls" == *"(applies: Pod )"* ]] || fail "no client Pod: $calls"

run_case "kind-up.sh --help lists the numbered steps" "hack/kind-up.sh --help"
expect_rc 0
expect_eq "steps in --help" "$(printf '%s\n' "$out" | sed -n 's/^\([1-6]\)\. .*/\1/p' | tr -d '\n')" 123456

# ── run.sh sets up through hack/kind-up.sh, which builds and loads through kind-images.sh ───
case_name="run.sh wiring"
cases=$((cases + 1))
grep -qx '\. e2e/images\.sh' hack/kind-up.sh || fail "kind-up.sh does not source e2e/images.sh"
grep -qx '\. e2e/images\.sh' e2e/kind-images.sh || fail "kind-images.sh does not source e2e/images.sh"
# shellcheck disable=SC2016 # the $ are literal: the scripts' text
grep -q '^  e2e/kind-images\.sh --cluster "\$cluster" --tag "\$tag" .*"\$CURL_IMAGE"$' hack/kind-up.sh \
  || fail "kind-up.sh does not build and load its images and the curl image with e2e/kind-images.sh"
# shellcheck disable=SC2016
grep -q '^  hack/kind-up\.sh --cluster "\$CLUSTER" --tag "\$IMAGE_TAG" --key-id "\$KEY_ID" --curl-image "\$CURL_IMAGE"' e2e/run.sh \
  || fail "run.sh does not set up its cluster with hack/kind-up.sh (cluster, tag, key id, curl image)"
# The Ready-means-serving and rejected-bundle tests need serving reports: the chart's default.
grep -qx '  scannerReportsServing: true' charts/prompt-defenders/values.yaml \
  || fail "the chart no longer turns on operator.scannerReportsServing by default (the e2e tests need it)"
if grep -v '^ *#' e2e/run.sh | grep -c 'scannerReportsServing' > /dev/null; then
  fail "run.sh sets operator.scannerReportsServing: the e2e must test the chart's default"
fi
for script in e2e/run.sh e2e/kind-images.sh hack/kind-up.sh; do
  if grep -v '^ *#' "$script" | grep -c 'kind load docker-image' > /dev/null; then
    fail "$script uses kind load docker-image"
  fi
done
for script in e2e/run.sh hack/kind-up.sh; do
  if grep -v '^ *#' "$script" | grep -cE 'docker (buildx )?build |e2e_load_images' > /dev/null; then
    fail "$script builds or loads images itself instead of through e2e/kind-images.sh"
  fi
done
if grep -v '^ *#' e2e/run.sh | grep -cE 'kind create cluster|helm .*install|config/samples' > /dev/null; then
  fail "run.sh sets up the cluster itself instead of through hack/kind-up.sh"
fi

if [ "$failures" -gt 0 ]; then
  echo "e2e/images_test.sh: $failures of $cases cases failed" >&2
  exit 1
fi
echo "ok: e2e/images_test.sh, $cases cases"
