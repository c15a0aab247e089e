#!/usr/bin/env bash
# Build a Debian bookworm base image with Python 3.11 without any image registry:
#   scripts/make_base_image.sh [IMAGE]        (default: streetwatch-base:bookworm)
# debootstrap (minbase) fetches the Debian packages from the machine's Debian mirror and
# `docker import` turns the folder into an image. The Dockerfiles take it as
# `--build-arg BASE=streetwatch-base:bookworm`; with a registry, BASE=python:3.11-slim instead.
# The packages are what the images need at run time and nothing more: Python with venv, CA
# certificates (mqtts://), tzdata (camera time zones), libgl1 and libglib2.0-0 (opencv-python).
set -euo pipefail
image="${1:-streetwatch-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
for tool in debootstrap docker; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is not installed (apt-get install debootstrap docker.io)" >&2; exit 2; }
done
root="$(mktemp -d /var/tmp/streetwatch-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
started=$(date +%s)
debootstrap --variant=minbase \
  --include=python3,python3-venv,ca-certificates,tzdata,libgl1,libglib2.0-0 \
  bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"
# No package lists or caches in the image (apt-get update works again inside if needed).
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "base image $image built in $(( $(date +%s) - started )) s"
