# shellcheck shell=bash
# How e2e/run.sh puts images into the kind nodes. Sourced (by run.sh, and by
# e2e/images_test.sh, which runs these functions against stub `docker` and `kind` commands and
# checks the exact calls); defines functions only, runs nothing.
#
# Why not `kind load docker-image`: with Docker's containerd image store (the default of new
# Docker 29 installs, among them GitHub's runner images) `docker save IMAGE` of a pulled
# multi-platform image writes the whole index although only one platform's content was pulled,
# and kind's `ctr images import --all-platforms` in the node then fails with
# `ctr: content digest sha256:…: not found` (kind issues 3795 and 4066). Saving one platform
# (`docker save --platform`, Docker 28 / API 1.48 and newer) gives an archive that imports
# cleanly; `kind load image-archive` imports it into every node. Older daemons have no
# multi-platform store, so there a plain `docker save` is already single-platform.
#
# Every function prints `error: …` naming the image and returns 1 on failure; none exits.

# The kind nodes' platform, as `docker save --platform` takes it: linux/amd64, linux/arm64, …
# $PD_E2E_PLATFORM wins; else the daemon's OS and architecture (`docker info`, which is the
# machine the nodes run on even when the Docker client is remote), else `uname -m`; linux/amd64
# when none of them says anything this function understands (with a warning on stderr).
e2e_platform() {
  if [ -n "${PD_E2E_PLATFORM:-}" ]; then
    printf '%s\n' "$PD_E2E_PLATFORM"
    return 0
  fi
  local os arch info
  info=$(docker info --format '{{.OSType}}/{{.Architecture}}' 2> /dev/null) || info=
  os=${info%%/*}
  arch=${info#*/}
  if [ -z "$info" ] || [ "$arch" = "$info" ] || [ -z "$arch" ]; then
    os=linux
    arch=$(uname -m 2> /dev/null) || arch=
  fi
  case "$arch" in
    x86_64 | amd64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    armv7l | armv7 | arm) arch=arm/v7 ;;
    ppc64le | s390x | riscv64) ;;
    *)
      echo "warning: could not tell the Docker host's architecture (${arch:-nothing}); assuming linux/amd64 (set PD_E2E_PLATFORM to override)" >&2
      printf 'linux/amd64\n'
      return 0
      ;;
  esac
  printf '%s/%s\n' "${os:-linux}" "$arch"
}

# Whether the daemon takes `docker save --platform` (Engine API 1.48, Docker 28.0, or newer).
e2e_save_takes_platform() {
  local api major minor
  api=$(docker version --format '{{.Server.APIVersion}}' 2> /dev/null) || return 1
  IFS=. read -r major minor _ <<< "$api"
  case "$major$minor" in '' | *[!0-9]*) return 1 ;; esac
  [ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -ge 48 ]; }
}

# One line for the log: Docker version, image store, platform.
e2e_docker_summary() { # e2e_docker_summary PLATFORM
  local version store
  version=$(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2> /dev/null) \
    || version="(version unknown)"
  if docker info --format '{{json .DriverStatus}}' 2> /dev/null | grep -c 'io.containerd.snapshotter' > /dev/null; then
    store="containerd image store"
  else
    store="classic image store"
  fi
  printf 'docker %s, %s, nodes are %s\n' "$version" "$store" "$1"
}

# Pulls IMAGE for PLATFORM unless Docker already has it.
e2e_pull_image() { # e2e_pull_image PLATFORM IMAGE
  local platform=$1 image=$2
  if docker image inspect "$image" > /dev/null 2>&1; then
    return 0
  fi
  docker pull --platform "$platform" "$image" || {
    echo "error: could not pull $image for $platform (Docker Hub rate limit? see \"Runner assumptions\" in docs/src/contributing/e2e.md: log in with docker login, or pull it yourself)" >&2
    return 1
  }
}

# Loads each IMAGE (which must be in Docker already) into every node of kind cluster CLUSTER:
# `docker save --platform PLATFORM` to an archive in DIR, `kind load image-archive`, then
# checks that each node's containerd has it under that name (`crictl inspecti`), so a load
# that "succeeded" without the image cannot surface later as an ImagePullBackOff.
e2e_load_images() { # e2e_load_images CLUSTER PLATFORM DIR IMAGE...
  local cluster=$1 platform=$2 dir=$3
  shift 3
  local image archive node nodes save=(docker save)
  if e2e_save_takes_platform; then
    save+=(--platform "$platform")
  fi
  if ! nodes=$(kind get nodes --name "$cluster") || [ -z "$nodes" ]; then
    echo "error: kind cluster $cluster has no nodes; cannot load $*" >&2
    return 1
  fi
  mkdir -p "$dir" || return 1
  for image in "$@"; do
    docker image inspect "$image" > /dev/null 2>&1 || {
      echo "error: image $image is not in Docker (build or pull it first; with --no-build run.sh uses what \`docker images\` has)" >&2
      return 1
    }
    archive="$dir/$(printf '%s' "$image" | tr -c 'A-Za-z0-9._-' '_').tar"
    echo "loading $image ($platform) into kind cluster $cluster"
    "${save[@]}" -o "$archive" "$image" || {
      rm -f "$archive"
      echo "error: could not export $image for $platform from Docker (\`${save[*]} -o $archive $image\` failed; an image built without $platform content, or an attestation-only index? rebuild it with --provenance=false --sbom=false)" >&2
      return 1
    }
    kind load image-archive --name "$cluster" "$archive" || {
      rm -f "$archive"
      echo "error: kind could not load $image into cluster $cluster (\`kind load image-archive --name $cluster $archive\` failed)" >&2
      return 1
    }
    rm -f "$archive"
    for node in $nodes; do
      docker exec "$node" crictl inspecti "$image" > /dev/null 2>&1 || {
        echo "error: $image is not on node $node after loading it into kind cluster $cluster (\`docker exec $node crictl images\` lists what is)" >&2
        return 1
      }
    done
  done
}
