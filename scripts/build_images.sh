#!/usr/bin/env bash
# Build the StreetWatch images: streetwatch-edge, streetwatch-central and, for the compose stack
# on a machine without an image registry, streetwatch-mosquitto and streetwatch-postgres.
#   scripts/build_images.sh [--base IMAGE] [--online] [--variant cpu|gpu]
# --base    the Python base image (default: streetwatch-base:bookworm, made by
#           scripts/make_base_image.sh if missing; with a registry: python:3.11-slim)
# --online  let pip fetch dependencies from the package index inside the build (default: none:
#           every wheel is collected here first with this machine's pip, then installed --no-index)
# --variant gpu: the edge image with onnxruntime-gpu (see deploy/docker/edge.Dockerfile)
# Prints each step's time. See docs/deploy.md.
set -euo pipefail
cd "$(dirname "$0")/.."
base="streetwatch-base:bookworm"; online=0; variant=cpu
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base="$2"; shift 2;;
    --online) online=1; shift;;
    --variant) variant="$2"; shift 2;;
    *) echo "usage: $0 [--base IMAGE] [--online] [--variant cpu|gpu]" >&2; exit 2;;
  esac
done
python="${PYTHON:-python3}"; [ -x .venv/bin/python ] && python=.venv/bin/python
log="build/docker-build.log"; mkdir -p build; : > "$log"
step() {  # run quietly (output in build/docker-build.log), then print the step's time
  local started=$SECONDS
  "$@" >>"$log" 2>&1 || { tail -30 "$log" >&2; echo "$0: $label failed (see $log)" >&2; exit 1; }
  echo "  ${label}: $((SECONDS - started)) s"
}

context="build/docker"
rm -rf "$context"; mkdir -p "$context/wheels"
echo "building on base $base ($([ "$online" = 1 ] && echo "dependencies from the package index" || echo "no index: wheels collected here"))"
label="web assets (npm)"; step scripts/web_assets.sh
label="wheel"; step "$python" -m build --wheel --outdir "$context/wheels" .
wheel="$(ls "$context"/wheels/streetwatch-*.whl)"
pip_args="--no-index"
if [ "$online" = 0 ]; then
  extras="edge,central,cluster"  # the images' extras (central.Dockerfile: central,cluster)
  label="dependency wheels"; step "$python" -m pip wheel -q --wheel-dir "$context/wheels" "${wheel}[${extras}]"
  if [ "$variant" = gpu ]; then
    label="onnxruntime-gpu wheels"; step "$python" -m pip wheel -q --wheel-dir "$context/wheels" "onnxruntime-gpu[cuda,cudnn]"
  fi
else
  pip_args=""
fi
if [ "$base" = "streetwatch-base:bookworm" ] && ! docker image inspect "$base" >/dev/null 2>&1; then
  label="base image (debootstrap)"; step scripts/make_base_image.sh "$base"
fi
build() {  # NAME DOCKERFILE CONTEXT [ARGS...]
  local name="$1" file="$2" ctx="$3"; shift 3
  label="image $name"; step docker build -t "$name" -f "$file" --build-arg BASE="$base" "$@" "$ctx"
}
build streetwatch-edge deploy/docker/edge.Dockerfile "$context" --build-arg PIP_ARGS="$pip_args" --build-arg VARIANT="$variant"
build streetwatch-central deploy/docker/central.Dockerfile "$context" --build-arg PIP_ARGS="$pip_args"
if [ "$base" = "streetwatch-base:bookworm" ]; then
  build streetwatch-mosquitto deploy/docker/mosquitto.Dockerfile deploy/docker
  build streetwatch-postgres deploy/docker/postgres.Dockerfile deploy/docker
fi
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^streetwatch-'
