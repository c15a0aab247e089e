#!/usr/bin/env bash
# Make sure a Docker engine answers here: install Debian's docker.io, docker-compose and
# debootstrap when missing (as root), and start dockerd in the background when none runs (this
# machine kind has no systemd). Used by .ci/run before scripts/compose_check.sh.
set -euo pipefail
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "$0: please install: sudo apt-get install ${need[*]}" >&2; exit 2; }
  echo "docker_engine: installing Debian packages: ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if docker info >/dev/null 2>&1; then exit 0; fi
mkdir -p /var/log/streetwatch
nohup dockerd >/var/log/streetwatch/dockerd.log 2>&1 &
for _ in $(seq 60); do
  docker info >/dev/null 2>&1 && { echo "docker_engine: dockerd started"; exit 0; }
  sleep 1
done
echo "$0: dockerd did not start; see /var/log/streetwatch/dockerd.log" >&2
tail -20 /var/log/streetwatch/dockerd.log >&2
exit 1
