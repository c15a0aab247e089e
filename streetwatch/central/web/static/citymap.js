// The city map (/map): Leaflet with the cluster and heat plugins (static/lib, from npm). The base is
// the configured tile server or the imported vector street map; the overlays come from
// /map/layers.json already in the tiles' datum. Search, layer switches, a time filter, the open
// cases in view as a list (keyboard and screen-reader users get every case as a link there too).
(function () {
  "use strict";
  const mapEl = document.getElementById("city-map");
  if (!mapEl || !window.L) return;
  const config = JSON.parse(document.getElementById("map-config").textContent);
  const words = JSON.parse(document.getElementById("map-words").textContent);
  const names = JSON.parse(document.getElementById("labels-json").textContent);
  const DAY_MS = 86400000;
  const ROAD_WIDTH = { primary: 7, secondary: 6, tertiary: 5, residential: 4, unclassified: 4, pedestrian: 4, service: 2 };

  const fmt = (text, values) => text.replace(/%\((\w+)\)s/g, (_, key) => (key in values ? String(values[key]) : ""));
  const label = (kind, value) => (names[kind] && names[kind][value]) || value;

  // DOM built with textContent only: names and addresses come from imported files.
  function node(tag, attrs, children) {
    const el = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => el.setAttribute(k, v));
    (children || []).forEach((c) => el.append(c instanceof Node ? c : document.createTextNode(String(c))));
    return el;
  }

  const map = L.map(mapEl, { maxZoom: 21, zoomSnap: 0.5, zoomControl: false });
  let placed = false; // a view is set (before it, Leaflet has no bounds to ask about)
  map.on("load", () => { placed = true; });
  map.on("popupopen", (e) => { // Leaflet names its close button in English
    const close = e.popup.getElement() && e.popup.getElement().querySelector(".leaflet-popup-close-button");
    if (close) { close.setAttribute("aria-label", words.close); close.setAttribute("title", words.close); }
  });
  L.control.zoom({ zoomInTitle: words.zoom_in, zoomOutTitle: words.zoom_out }).addTo(map);
  map.attributionControl.setPrefix(false);
  map.attributionControl.getContainer().setAttribute("translate", "no"); // sources' own names
  L.control.scale({ imperial: false }).addTo(map);
  map.createPane("base").style.zIndex = 250;

  // ---- base layers
  let tiles = null;
  if (config.tiles) {
    tiles = L.tileLayer(config.tiles.url, {
      subdomains: config.tiles.subdomains || "abc",
      attribution: config.tiles.attribution,
      maxZoom: 21,
      maxNativeZoom: config.tiles.max_zoom,
    }).addTo(map);
  }
  let vector = null;
  if (config.basemap_url) {
    vector = L.geoJSON(null, {
      pane: "base",
      interactive: false,
      attribution: config.basemap_attribution,
      style: (f) => {
        const kind = f.properties.kind;
        if (kind === "building") return { color: "#c4b8ab", weight: 1, fillColor: "#e4dcd3", fillOpacity: 1, className: "base-building" };
        if (kind === "water") return { color: "#9ecae1", fillColor: "#c6dbef", fillOpacity: 1, weight: 1 };
        if (kind === "kerb") return { color: "#8c959f", weight: 1, dashArray: "2 2" };
        return { color: "#ffffff", weight: ROAD_WIDTH[f.properties.highway] || 3, opacity: 1, className: "base-road" };
      },
    }).addTo(map);
  }
  if (tiles && vector) { // both: the city's tiles first, the imported street map for when they are out of reach
    vector.remove();
    L.control.layers({ [words.tiles]: tiles, [words.vector_base]: vector }, null, { collapsed: false }).addTo(map);
  }

  // ---- overlays
  const overlays = {
    areas: L.featureGroup(),
    roads: L.featureGroup(),
    zones: L.featureGroup(),
    cameras: L.featureGroup(),
    hotspots: L.featureGroup(),
    cases: L.markerClusterGroup({ disableClusteringAtZoom: 19, showCoverageOnHover: false, maxClusterRadius: 50 }),
    heat: L.heatLayer([], { radius: 28, blur: 18, maxZoom: 18, minOpacity: 0.35 }),
  };
  const state = { cases: [], confirmed: [], now: Date.now(), days: 30, violations: new Set(), statuses: new Set() };
  const search = [];

  function tag(layer, attrs) {
    layer.on("add", () => {
      const el = layer.getElement && layer.getElement();
      if (el) Object.entries(attrs).forEach(([k, v]) => el.setAttribute(k, v));
    });
  }

  function zoneLayer(f) {
    const p = f.properties;
    const fill = config.grade_fill[p.grade] || "#8c959f";
    const layer = L.geoJSON(f, { style: { color: fill, fillColor: fill, fillOpacity: 0.45, weight: 2, className: "zone" } });
    layer.eachLayer((l) => tag(l, { "data-merchant": p.id, "data-grade": p.grade }));
    const link = node("a", { href: "/?merchant=" + encodeURIComponent(p.id) + "&status=confirmed" }, [words.merchant_cases]);
    layer.bindPopup(() => node("div", { class: "popup", "data-merchant": p.id }, [
      node("b", { translate: "no" }, [p.name]), node("br"), words.address + ": " + p.address, node("br"),
      words.road + ": " + p.road + " · " + words.grade + ": " + (words[p.grade] || p.grade), node("br"), link,
    ]));
    layer.bindTooltip(p.name, { direction: "top", className: "zone-label" });
    search.push({ kind: words.merchant, text: [p.name, p.address, p.road, p.id].join(" "), title: p.name,
                  sub: p.address, go: () => { map.fitBounds(layer.getBounds(), { maxZoom: 19 }); layer.openPopup(); } });
    return layer;
  }

  function caseMarker(f) {
    const p = f.properties;
    const [lon, lat] = f.geometry.coordinates;
    const colour = config.violation_fill[p.violation] || "#57606a";
    const marker = L.circleMarker([lat, lon], { radius: 8, color: "#fff", weight: 2, fillColor: colour, fillOpacity: 0.95, className: "case" });
    tag(marker, { "data-case": String(p.id), "data-violation": p.violation, "data-status": p.status });
    const title = "#" + p.id + " " + label("violation", p.violation) + " (" + label("status", p.status) + ")";
    marker.bindPopup(() => node("div", { class: "popup", "data-case": String(p.id) }, [
      node("b", {}, [title]), node("br"), p.merchant_name ? node("span", { translate: "no" }, [p.merchant_name]) : "",
      node("br"), words.first_seen + ": " + new Date(p.first_seen).toLocaleString(document.documentElement.lang),
      node("br"), node("a", { href: "/cases/" + p.id, "data-testid": "popup-case-link" }, [words.open_case + " #" + p.id]),
    ]));
    marker.feature = f;
    marker.title = title;
    return marker;
  }

  function shown(f) {
    const p = f.properties;
    return state.violations.has(p.violation) && state.statuses.has(p.status)
      && Date.parse(p.first_seen) >= state.now - state.days * DAY_MS;
  }

  function refreshCases() {
    overlays.cases.clearLayers();
    overlays.cases.addLayers(state.cases.filter((m) => shown(m.feature)));
    const since = state.now - state.days * DAY_MS;
    overlays.heat.setLatLngs(state.confirmed
      .filter((f) => Date.parse(f.properties.first_seen) >= since)
      .map((f) => [f.geometry.coordinates[1], f.geometry.coordinates[0], 1]));
    listInView();
  }

  function listInView() {
    if (!placed) return;
    const list = document.querySelector('[data-testid="in-view-list"]');
    const bounds = map.getBounds();
    const visible = state.cases.filter((m) => shown(m.feature) && bounds.contains(m.getLatLng()));
    document.querySelector('[data-testid="in-view-count"]').textContent = fmt(words.in_view, { n: visible.length });
    list.replaceChildren(...visible.slice(0, 60).map((m) => node("li", {}, [
      node("a", { href: "/cases/" + m.feature.properties.id, "data-case": String(m.feature.properties.id) }, [m.title]),
      m.feature.properties.merchant_name ? node("span", { translate: "no" }, [" · " + m.feature.properties.merchant_name]) : "",
    ])));
  }

  function addLayers(data) {
    state.now = Date.parse(data.now);
    L.geoJSON(data.areas, {
      style: { color: "#24292f", weight: 2, dashArray: "8 4", fill: false, className: "area" },
      onEachFeature: (f, l) => { l.bindTooltip(words.area + ": " + f.properties.name, { sticky: true }); tag(l, { "data-area": f.properties.id }); },
    }).addTo(overlays.areas);
    L.geoJSON(data.roads, {
      style: (f) => ({ color: config.grade_fill[f.properties.grade] || "#8c959f", weight: 9, opacity: 0.55, lineCap: "round", className: "road" }),
      onEachFeature: (f, l) => {
        const p = f.properties;
        tag(l, { "data-road": p.road, "data-grade": p.grade });
        l.bindTooltip(fmt(words.road_grade, { road: p.road, grade: words[p.grade] || p.grade, r: p.red, y: p.yellow, g: p.green, h: p.hotspots }), { sticky: true });
        search.push({ kind: words.road, text: p.road, title: p.road, sub: words[p.grade] || p.grade,
                      go: () => map.fitBounds(l.getBounds(), { maxZoom: 18 }) });
      },
    }).addTo(overlays.roads);
    data.zones.features.forEach((f) => zoneLayer(f).addTo(overlays.zones));
    L.geoJSON(data.cameras, {
      style: (f) => (f.geometry.type === "LineString"
        ? { color: "#0969da", weight: 4, dashArray: "6 6", className: "camera-track" }
        : { color: "#0969da", weight: 1.5, fillColor: "#0969da", fillOpacity: 0.15, className: "camera-view" }),
      onEachFeature: (f, l) => {
        const text = fmt(f.geometry.type === "LineString" ? words.camera_moving : words.camera_fixed, { id: f.properties.camera_id });
        tag(l, { "data-camera": f.properties.camera_id });
        l.bindTooltip(text, { sticky: true });
      },
    }).addTo(overlays.cameras);
    data.hotspots.features.forEach((f) => {
      const p = f.properties;
      const [lon, lat] = f.geometry.coordinates;
      const c = L.circle([lat, lon], { radius: 12 + Math.min(p.case_count, 30), color: "#d1242f", weight: 2.5, dashArray: "6 3", fillOpacity: 0.12, className: "hotspot" });
      tag(c, { "data-hotspot": p.key });
      c.bindTooltip(p.label + " · " + fmt(words.hotspot, { n: p.case_count })
        + (p.unreviewed_count ? " · " + fmt(words.unreviewed, { n: p.unreviewed_count }) : ""));
      c.addTo(overlays.hotspots);
    });
    state.cases = data.cases.features.map(caseMarker);
    state.cases.forEach((m) => search.push({
      kind: words.case, text: "#" + m.feature.properties.id, title: m.title, sub: m.feature.properties.merchant_name || "",
      go: () => overlays.cases.zoomToShowLayer(m, () => m.openPopup()),
    }));
    state.confirmed = data.confirmed.features;
    // the view fits what there is to work on; a district's outline only when it holds nothing yet
    const content = L.featureGroup([overlays.zones, ...state.cases]).getBounds();
    const extent = content.isValid() ? content : overlays.areas.getBounds();
    if (extent.isValid()) map.fitBounds(extent, { padding: [24, 24], maxZoom: 18 });
    else if (!vector) map.setView([30, 110], 4);
    refreshCases();
  }

  // ---- controls
  document.querySelectorAll("[data-layer]").forEach((box) => {
    const apply = () => (box.checked ? overlays[box.dataset.layer].addTo(map) : overlays[box.dataset.layer].remove());
    box.addEventListener("change", apply);
    apply();
  });
  document.querySelectorAll("[data-violation]").forEach((b) => b.checked && state.violations.add(b.dataset.violation));
  document.querySelectorAll("[data-status]").forEach((b) => b.checked && state.statuses.add(b.dataset.status));
  document.querySelectorAll("[data-violation], [data-status]").forEach((box) => box.addEventListener("change", () => {
    const set = box.dataset.violation ? state.violations : state.statuses;
    const key = box.dataset.violation || box.dataset.status;
    if (box.checked) set.add(key); else set.delete(key);
    refreshCases();
  }));
  const time = document.getElementById("map-time");
  state.days = Number(time.value);
  time.addEventListener("change", () => { state.days = Number(time.value); refreshCases(); });
  map.on("moveend", listInView);

  const input = document.getElementById("map-search");
  const results = document.querySelector('[data-testid="search-results"]');
  let hits = [];
  function pick(i) {
    const hit = hits[i];
    if (!hit) return;
    results.hidden = true;
    input.value = hit.title;
    hit.go();
  }
  input.addEventListener("input", () => {
    const q = input.value.trim().toLowerCase();
    const number = q.replace(/^#/, "");
    hits = !q ? [] : search.filter((s) => s.text.toLowerCase().includes(q)
      || (/^\d+$/.test(number) && s.text === "#" + number)).slice(0, 8);
    results.replaceChildren(...(hits.length ? hits.map((h, i) => {
      const li = node("li", { role: "option", "data-index": String(i) }, [h.title, node("small", {}, [h.kind + (h.sub ? " · " + h.sub : "")])]);
      li.addEventListener("click", () => pick(i));
      return li;
    }) : [node("li", { "aria-disabled": "true" }, [words.no_match])]));
    results.hidden = !q;
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); pick(0); }
    if (e.key === "Escape") results.hidden = true;
  });

  // ---- data
  const base = config.basemap_url ? fetch(config.basemap_url, { credentials: "same-origin" }).then((r) => r.json()) : Promise.resolve(null);
  const streets = base.then((doc) => {
    if (doc && vector) {
      vector.addData(doc);
      if (!placed && vector.getBounds().isValid()) map.fitBounds(vector.getBounds());
    }
  });
  const layers = fetch(config.layers_url, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then((r) => r.json())
    .then((data) => addLayers(data));
  // ready once both are drawn (or the street map failed): the two requests finish in either order
  Promise.allSettled([streets, layers]).then(() => { mapEl.dataset.ready = "1"; });
})();
