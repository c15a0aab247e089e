#!/usr/bin/env bash
# The web pages' front-end libraries from the npm registry (package.json, versions pinned in
# package-lock.json): `npm ci` into node_modules/, then their built files are copied into
# streetwatch/central/web/static/lib/, where the app serves them same-origin and the wheel picks
# them up as package data. Neither folder is committed. Idempotent; setup.sh and build_images.sh run it.
set -euo pipefail
cd "$(dirname "$0")/.."
lib=streetwatch/central/web/static/lib
if ! command -v npm >/dev/null; then
  echo "web_assets: npm is missing (Debian: apt-get install npm); the map and charts need it" >&2
  exit 1
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
fi
rm -rf "$lib"; mkdir -p "$lib/images"
n=node_modules
cp "$n/leaflet/dist/leaflet.js" "$n/leaflet/dist/leaflet.css" "$lib/"
cp "$n"/leaflet/dist/images/*.png "$lib/images/"
cp "$n/leaflet.markercluster/dist/leaflet.markercluster.js" "$n/leaflet.markercluster/dist/MarkerCluster.css" \
   "$n/leaflet.markercluster/dist/MarkerCluster.Default.css" "$lib/"
cp "$n/leaflet.heat/dist/leaflet-heat.js" "$lib/"
cp "$n/chart.js/dist/chart.umd.min.js" "$lib/chart.umd.js"
# the licences travel with the files (BSD-2 Leaflet, MIT the others)
for p in leaflet leaflet.markercluster leaflet.heat chart.js; do
  cp "$n/$p/LICENSE"* "$lib/LICENSE.$p" 2>/dev/null || true
done
echo "web_assets: $(ls "$lib" | wc -l) files in $lib"
