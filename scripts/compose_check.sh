#!/usr/bin/env bash
# Run the compose stack (deploy/compose) and show an alert from the edge container reaching the
# web queue: broker, database, migrate, central ingest, web queue and one edge box replaying real
# footage; then an API token asks the web queue for its cases. Prints timings; exits non-zero if
# no case arrives within the time limit.
#   scripts/compose_check.sh [--keep] [--no-build]
# Needs: a running Docker engine (Debian: apt-get install docker.io docker-compose; `dockerd &`),
# the images (built here by scripts/build_images.sh unless --no-build), mosquitto_passwd (package
# mosquitto), the model in $STREETWATCH_MODEL_DIR and footage in $STREETWATCH_ASSETS_DIR/video.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0; build=1
for arg in "$@"; do
  case "$arg" in --keep) keep=1;; --no-build) build=0;; *) echo "usage: $0 [--keep] [--no-build]" >&2; exit 2;; esac
done
assets="${STREETWATCH_ASSETS_DIR:-$(cd .. && pwd)/shared/assets}"
export STREETWATCH_MODEL_DIR="${STREETWATCH_MODEL_DIR:-$assets}"
export STREETWATCH_FOOTAGE_DIR="${STREETWATCH_FOOTAGE_DIR:-$assets/video}"
export WEB_PORT="${WEB_PORT:-18000}"
# Docker makes a missing bind-mount source an empty folder: refuse here instead of an edge without a model.
[ -f "$STREETWATCH_MODEL_DIR/yolox_nano.onnx" ] || { echo "$0: no yolox_nano.onnx in STREETWATCH_MODEL_DIR=$STREETWATCH_MODEL_DIR" >&2; exit 2; }
[ -d "$STREETWATCH_FOOTAGE_DIR" ] || { echo "$0: STREETWATCH_FOOTAGE_DIR=$STREETWATCH_FOOTAGE_DIR is not a folder" >&2; exit 2; }
# Without a registry the broker and database images come from the debootstrap base.
if ! docker image inspect eclipse-mosquitto:2 >/dev/null 2>&1; then export MOSQUITTO_IMAGE=streetwatch-mosquitto; fi
if ! docker image inspect postgres:15 >/dev/null 2>&1; then export POSTGRES_IMAGE=streetwatch-postgres; fi
compose="docker-compose"; command -v docker-compose >/dev/null || compose="docker compose"
project="streetwatch-check"
dc() { $compose -p "$project" -f deploy/compose/docker-compose.yml "$@"; }
started=$SECONDS
stamp() { echo "[$((SECONDS - started)) s] $*"; }

if [ "$build" = 1 ]; then stamp "building images"; scripts/build_images.sh; fi

secrets=deploy/compose/secrets
rm -rf "$secrets"; mkdir -m 0700 "$secrets"
configs/mosquitto/make_passwd.sh "$secrets/mosquitto.passwd" central box-01 >/dev/null
grep '^central:' "$secrets/mosquitto.passwd.credentials" | cut -d: -f2- | tr -d '\n' > "$secrets/central_mqtt_password"
grep '^box-01:' "$secrets/mosquitto.passwd.credentials" | cut -d: -f2- | tr -d '\n' > "$secrets/edge_mqtt_password"
rm -f "$secrets/mosquitto.passwd.credentials"
head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n=' > "$secrets/postgres_password"
head -c 48 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n=' > "$secrets/web_secret_key"
# Bind-mounted secrets keep their host mode: readable inside by the services' own users (the
# folder stays 0700 on the host).
chmod 0644 "$secrets"/*

cleanup() {
  if [ "$keep" = 0 ]; then dc down -v --remove-orphans >/dev/null 2>&1 || true; rm -rf "$secrets"; fi
}
trap cleanup EXIT
dc down -v --remove-orphans >/dev/null 2>&1 || true
stamp "compose up"
dc up -d
wait_until() {  # SECONDS WHAT COMMAND...
  local limit=$1 what=$2; shift 2
  local until=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $until ]; then stamp "timed out waiting for $what"; dc ps; dc logs --tail 40; return 1; fi
    sleep 2
  done
  stamp "$what"
}
web_up() { python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$WEB_PORT/login', timeout=3)"; }
wait_until 180 "web queue answers on 127.0.0.1:$WEB_PORT" web_up

ops_password="$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
dc exec -T -e OPS_PASSWORD="$ops_password" web central create-user ops --role admin --password-env OPS_PASSWORD
token="$(dc exec -T web central create-token ops --name compose-check | sed -n 's/^token [0-9]* for ops: //p' | tr -d '\r')"
cases() {
  python3 - "$WEB_PORT" "$token" <<'PY'
import json, sys, urllib.request
request = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/api/cases", headers={"Authorization": f"Bearer {sys.argv[2]}"})
page = json.load(urllib.request.urlopen(request, timeout=5))
if not page["count"]:
    sys.exit(1)
case = page["data"][0]
print(f"web queue: {page['count']} case(s); first: #{case['id']} {case['violation']} {case['status']} "
      f"at ({case['lat']}, {case['lon']}) alerts={case.get('alert_count')}")
PY
}
wait_until 240 "an alert from the edge container is a case in the web queue" cases
cases
# the map's and charts' libraries came with the wheel (scripts/web_assets.sh put them there)
python3 - "$WEB_PORT" "$token" <<'PY'
import sys, urllib.request
base, token = f"http://127.0.0.1:{sys.argv[1]}", sys.argv[2]
for path in ("/static/lib/leaflet.js", "/static/lib/leaflet.markercluster.js", "/static/lib/chart.umd.js"):
    assert urllib.request.urlopen(base + path, timeout=5).status == 200, path
request = urllib.request.Request(f"{base}/api/cases.geojson", headers={"Authorization": f"Bearer {token}"})
body = urllib.request.urlopen(request, timeout=5).read().decode()
assert body.startswith('{"type":"FeatureCollection"'), body[:200]
print("web: the map's libraries are served; /api/cases.geojson answers")
PY
healthy() {  # every service with a healthcheck reports healthy
  local id status
  for id in $(dc ps -q central web edge postgres); do
    status="$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")"
    [ "$status" = healthy ] || [ "$status" = none ] || return 1
  done
}
wait_until 120 "central, web, edge and postgres report healthy" healthy
stamp "edge check inside the edge container (its config, its secrets file, the compose network)"
dc exec -T edge edge check --config /etc/streetwatch/edge.yaml
dc exec -T edge python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9108/metrics').read().decode())" \
  | grep -E '^streetwatch_(build_info|seconds_since_frame|alerts_published_total|frames_decoded_total)' || true
dc ps
stamp "done"
