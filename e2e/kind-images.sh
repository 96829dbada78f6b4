#!/usr/bin/env bash
# Builds the operator and scanner images and loads them into every node of a kind cluster.
# One script for both users of it: e2e/run.sh calls it, and the kind walkthrough (README.md, docs/src/install.md)
# tells a new user to run it, so the walkthrough and the suite load images the same way.
#
#   e2e/kind-images.sh --cluster NAME [--tag TAG] [--no-build] [EXTRA_IMAGE...]
#
# 1. builds ghcr.io/prompt-defenders/pd-scanner:TAG and ghcr.io/prompt-defenders/pd-operator:TAG
#    (TAG: dev) from the Dockerfile with docker buildx: --load, and no provenance/SBOM
#    attestations, which would make the image an OCI index with an extra attestation manifest
#    when a plain image is what the nodes import;
# 2. pulls each EXTRA_IMAGE for the nodes' platform unless Docker has it (run.sh: the probes'
#    curl image);
# 3. loads them all into every node of kind cluster NAME: `docker save --platform` + `kind load
#    image-archive`, then checks each node has each image (e2e/images.sh says why not
#    `kind load docker-image`).
#
#   --no-build   load what `docker images` already has under those names
#
# The chart's default images (ghcr.io/prompt-defenders/*:0.1.0) are not published: a cluster
# gets them from here. Environment: PD_E2E_PLATFORM (the nodes' platform; default from
# `docker info`), PD_E2E_WORKDIR (where the archives are written and removed again;
# ~/.cache/prompt-defenders/e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=e2e/images.sh
. e2e/images.sh

# Where the chart looks for the images (operator.image.repository, scanner.image.repository).
REGISTRY=ghcr.io/prompt-defenders
WORKDIR=${PD_E2E_WORKDIR:-$HOME/.cache/prompt-defenders/e2e}

usage() {
  sed -n '6p' "$0" | sed 's/^# *//' >&2
  exit 64
}

cluster=
tag=dev
build=1
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cluster) [ $# -ge 2 ] || usage; cluster=$2; shift ;;
    --tag) [ $# -ge 2 ] || usage; tag=$2; shift ;;
    --no-build) build=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "error: unknown argument: $1" >&2; usage ;;
    *) extra+=("$1") ;;
  esac
  shift
done
[ -n "$cluster" ] || { echo "error: --cluster NAME is required (kind get clusters lists them)" >&2; usage; }

die() { echo "error: $*" >&2; exit 1; }
for tool in docker kind; do
  command -v "$tool" > /dev/null 2>&1 || die "$tool is not installed"
done
if [ "$build" = 1 ]; then
  docker buildx version > /dev/null 2>&1 \
    || die "docker buildx is not installed (the Dockerfile needs BuildKit; install the docker-buildx plugin, or use --no-build with images you built yourself)"
fi
platform=$(e2e_platform)
images=("$REGISTRY/pd-operator:$tag" "$REGISTRY/pd-scanner:$tag")

if [ "$build" = 1 ]; then
  for name in pd-scanner pd-operator; do
    echo "building $REGISTRY/$name:$tag"
    docker buildx build --load --provenance=false --sbom=false \
      -f Dockerfile --target "$name" -t "$REGISTRY/$name:$tag" .
  done
fi
for image in ${extra[@]+"${extra[@]}"}; do
  e2e_pull_image "$platform" "$image"
done
e2e_load_images "$cluster" "$platform" "$WORKDIR/images" "${images[@]}" ${extra[@]+"${extra[@]}"}
