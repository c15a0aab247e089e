#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: system packages the tests and demo use, a venv, the project.
# Usage: scripts/setup.sh [extras]   (default extras: all = edge, central, dev)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-all}"

need_apt=()
# GStreamer RTSP server (tests serve real H.264 over RTSP on loopback); Debian's gi binds /usr/bin/python3.
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null ||
  need_apt+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
             gstreamer1.0-plugins-bad)
command -v chromium >/dev/null || need_apt+=(chromium)   # the browser tests drive Debian's chromium
command -v mosquitto >/dev/null || need_apt+=(mosquitto) # broker outage/ACL tests run their own Mosquitto
command -v openssl >/dev/null || need_apt+=(openssl)     # throw-away CA for the MQTT TLS test
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
python -m pip install -q -e ".[${extras}]"
