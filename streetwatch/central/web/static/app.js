// StreetWatch review desk: safe keyboard and touch decisions on server-rendered case cards.
// The highlighted case follows the click, the focus and the card in view; every key acts on it and
// the toast names it. One request per decision: keys are ignored while one is in flight and just
// after the highlight moved on by itself. Confirm, dismiss, merge and reassign can be undone for the
// configured window (the merchant's notice waits for it). Every action is the card's own <form>
// (works without JS); this script submits it with fetch and the CSRF token as a header.
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const strings = document.getElementById("i18n-strings")?.dataset || {};
  const labels = JSON.parse(document.getElementById("labels-json")?.textContent || "{}");
  const queue = document.getElementById("queue");
  const toast = document.getElementById("toast");
  const SETTLE_MS = 400; // after the highlight moved by itself, a repeated key press is not a new decision
  let selectedId = null;
  let busy = false;
  let settledAt = -Infinity;
  let lastUndo = null; // {auditIds, until, summary}

  function fmt(text, values) {
    return String(text || "").replace(/%\((\w+)\)s/g, (_, k) => (values && k in values ? values[k] : ""));
  }
  function label(kind, value) { return (labels[kind] && labels[kind][value]) || value; }

  // ---------------------------------------------------------------- selection
  function cards() { return Array.from(document.querySelectorAll("#queue .case-card")); }
  function openCards() { return cards().filter((c) => !c.classList.contains("done")); }
  function current() { return cards().find((c) => c.dataset.caseId === selectedId) || null; }

  function select(card, opts) {
    if (!card) return null;
    document.querySelectorAll(".case-card.selected").forEach((el) => el.classList.remove("selected"));
    card.classList.add("selected");
    selectedId = card.dataset.caseId;
    if (opts && opts.scroll) card.scrollIntoView({ block: "nearest" });
    if (opts && opts.auto) settledAt = performance.now();
    return card;
  }
  function step(delta) {
    const list = openCards();
    if (!list.length) return;
    const at = list.indexOf(current());
    const next = list[Math.max(0, Math.min(list.length - 1, (at < 0 ? 0 : at + delta)))];
    select(next, { scroll: true });
  }
  function inView(el) {
    const r = el.getBoundingClientRect();
    return r.bottom > 40 && r.top < window.innerHeight - 40;
  }
  if (queue) {
    queue.addEventListener("pointerdown", (ev) => { const c = ev.target.closest(".case-card"); if (c) select(c); }, true);
    queue.addEventListener("focusin", (ev) => { const c = ev.target.closest(".case-card"); if (c) select(c); });
    let ticking = false;
    window.addEventListener("scroll", () => {
      if (ticking) return;
      ticking = true;
      requestAnimationFrame(() => {
        ticking = false;
        const sel = current();
        if (sel && inView(sel)) return;
        const visible = openCards().find(inView);
        if (visible) select(visible);
      });
    }, { passive: true });
  }

  // ---------------------------------------------------------------- toast and undo
  function say(message, opts) {
    if (!toast) return;
    const text = toast.querySelector(".toast-text");
    const undo = toast.querySelector(".toast-undo");
    text.textContent = message;
    toast.className = opts && opts.error ? "error show" : "show";
    clearTimeout(say.timer);
    clearInterval(say.tick);
    undo.hidden = true;
    const until = opts && opts.undo ? Date.parse(opts.undo.until) : 0;
    if (until > Date.now()) {
      lastUndo = Object.assign({}, opts.undo, { summary: opts.undo.summary || message });
      sessionStorage.setItem("streetwatch-undo", JSON.stringify(lastUndo));
      undo.hidden = false;
      const left = undo.querySelector(".toast-left");
      const tick = () => {
        const s = Math.ceil((until - Date.now()) / 1000);
        if (s <= 0) { undo.hidden = true; lastUndo = null; sessionStorage.removeItem("streetwatch-undo"); clearInterval(say.tick); toast.className = ""; return; }
        left.textContent = s + "s";
      };
      tick();
      say.tick = setInterval(tick, 500);
    } else {
      say.timer = setTimeout(() => { toast.className = ""; }, 5000);
    }
  }
  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST", body, credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json" },
    });
    const data = await response.json().catch(() => ({}));
    return { ok: response.ok, status: response.status, data };
  }
  async function undoLast() {
    const pending = lastUndo;
    if (!pending || busy || Date.parse(pending.until) <= Date.now()) return;
    busy = true;
    let reloadAfter = false;
    try {
      let message = strings.undone;
      for (const id of pending.auditIds) {
        const form = new FormData();
        const res = await post("/decisions/" + id + "/undo", form);
        if (!res.ok) { say(res.data.detail || fmt(strings.failed, { status: res.status }), { error: true }); return; }
        message = res.data.message || message;
        const card = document.getElementById("case-" + res.data.case_id);
        if (card) restore(card, res.data); else reloadAfter = true;
      }
      lastUndo = null;
      sessionStorage.removeItem("streetwatch-undo");
      say(message);
      if (reloadAfter) window.location.reload(); // the page moved on: show the case back in its place
    } catch (err) {
      say(strings.network, { error: true });
    } finally { busy = false; }
  }
  toast?.querySelector(".toast-undo")?.addEventListener("click", undoLast);

  function restore(card, data) {
    card.classList.remove("done");
    const badge = card.querySelector('[data-testid="status"]');
    if (badge && data.status) { badge.textContent = data.status_label || label("status", data.status); badge.className = "badge status-" + data.status; }
    select(card, { scroll: true });
  }
  function markDone(card, data) {
    card.classList.add("done");
    card.classList.remove("selected");
    const pick = card.querySelector(".bulk-pick");
    if (pick) pick.checked = false;
    const badge = card.querySelector('[data-testid="status"]');
    if (badge && data.status) { badge.textContent = data.status_label || label("status", data.status); badge.className = "badge status-" + data.status; }
  }
  function advance(after) {
    const list = openCards();
    const all = cards();
    const from = after ? all.indexOf(after) : -1;
    const next = all.slice(from + 1).find((c) => !c.classList.contains("done")) || list[0];
    if (next) { select(next, { scroll: true, auto: true }); return; }
    if (queue && queue.dataset.pageUrl && document.querySelector('[data-testid="pager"]')) {
      say(strings.pageDone, { undo: lastUndo });
      setTimeout(() => { window.location.href = queue.dataset.pageUrl; }, 900);
    }
  }

  // ---------------------------------------------------------------- decisions
  async function submit(form) {
    const card = form.closest(".case-card");
    if (busy) return;
    busy = true;
    const summary = card ? card.dataset.summary : "";
    say(fmt(strings.working, { case: summary }));
    try {
      const res = await post(form.action, new FormData(form));
      if (!res.ok) { say(res.data.detail || fmt(strings.failed, { status: res.status }), { error: true }); return; }
      const undo = res.data.undo_until ? { auditIds: [res.data.audit_id], until: res.data.undo_until } : null;
      say(res.data.message || "", { undo });
      if (card && res.data.still_open) {
        markReassigned(card, form);
      } else if (card) {
        markDone(card, res.data);
        advance(card);
      }
    } catch (err) {
      say(strings.network, { error: true });
    } finally { busy = false; }
  }
  function markReassigned(card, form) {
    const field = form.querySelector('[name="merchant_id"]');
    const cell = card.querySelector('[data-testid="merchant"]');
    if (field && cell && field.dataset.name) { cell.textContent = field.dataset.name; }
    if (field) field.value = "";
  }
  function actionForm(card, action) { return card && card.querySelector('form[data-action="' + action + '"]'); }

  function openDismiss(card) {
    const dialog = document.getElementById("dismiss-dialog");
    const form = actionForm(card, "dismiss");
    if (!dialog || !form) return;
    dialog.querySelector(".dialog-case").textContent = card.dataset.summary;
    const buttons = Array.from(dialog.querySelectorAll("button[data-reason]"));
    function choose(reason) {
      form.querySelector('[name="reason"]').value = reason;
      dialog.close();
      submit(form);
    }
    buttons.forEach((b) => { b.onclick = () => choose(b.dataset.reason); });
    dialog.onkeydown = (ev) => {
      const n = parseInt(ev.key, 10);
      if (ev.repeat) { ev.preventDefault(); return; }
      if (n >= 1 && n <= buttons.length) { ev.preventDefault(); choose(buttons[n - 1].dataset.reason); }
    };
    dialog.showModal();
    buttons[0]?.focus();
  }

  function candidateItem(html, onPick) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "candidate";
    button.innerHTML = html;
    button.addEventListener("click", () => onPick(button));
    li.appendChild(button);
    return li;
  }
  function esc(text) { const d = document.createElement("div"); d.textContent = text == null ? "" : String(text); return d.innerHTML; }
  function distanceText(m) { return m == null ? strings.noPosition : fmt(strings.distance, { n: Number(m).toFixed(0) }); }

  async function openMerge(card) {
    const dialog = document.getElementById("merge-dialog");
    const form = actionForm(card, "merge");
    if (!dialog || !form) return;
    dialog.querySelector(".dialog-case").textContent = card.dataset.summary;
    const mine = dialog.querySelector(".this-case img");
    mine.src = card.dataset.thumb || "";
    mine.hidden = !card.dataset.thumb;
    dialog.querySelector(".this-caption").textContent = card.dataset.summary;
    const theirs = dialog.querySelector(".that-case img");
    theirs.hidden = true;
    dialog.querySelector(".that-caption").textContent = "";
    const list = dialog.querySelector(".candidates");
    list.innerHTML = "";
    const manual = dialog.querySelector('input[name="value"]');
    manual.value = "";
    const go = dialog.querySelector("button.primary");
    go.textContent = fmt(strings.mergeInto, { id: "…" });
    dialog.returnValue = "";
    dialog.onclose = () => {
      if (dialog.returnValue === "ok" && manual.value.trim()) {
        form.querySelector('[name="into_case_id"]').value = manual.value.trim();
        submit(form);
      }
    };
    dialog.showModal();
    const res = await fetch("/api/cases/" + card.dataset.caseId + "/merge-candidates", { credentials: "same-origin" });
    const found = res.ok ? await res.json() : [];
    dialog.querySelector(".no-candidates").hidden = found.length > 0;
    found.forEach((c) => {
      const text = "#" + c.id + " " + label("violation", c.violation) + (c.merchant ? " · " + c.merchant.name : "") +
        " · " + (c.same_merchant ? strings.sameMerchant + " · " : "") + distanceText(c.distance_m) + " · " + label("status", c.status);
      const html = (c.evidence_url ? '<img src="' + esc(c.evidence_url) + '" alt="">' : "") + "<span>" + esc(text) + "</span>";
      list.appendChild(candidateItem(html, (button) => {
        list.querySelectorAll(".candidate.picked").forEach((b) => b.classList.remove("picked"));
        button.classList.add("picked");
        manual.value = String(c.id);
        theirs.src = c.evidence_url || "";
        theirs.hidden = !c.evidence_url;
        dialog.querySelector(".that-caption").textContent = text;
        go.textContent = fmt(strings.mergeInto, { id: c.id });
        go.focus();
      }));
    });
    list.querySelector(".candidate")?.focus();
  }

  async function openReassign(card) {
    const dialog = document.getElementById("reassign-dialog");
    const form = actionForm(card, "reassign");
    if (!dialog || !form) return;
    dialog.querySelector(".dialog-case").textContent = card.dataset.summary;
    const search = dialog.querySelector('input[name="merchant-search"]');
    const list = dialog.querySelector(".candidates");
    search.value = "";
    async function load() {
      const url = "/api/cases/" + card.dataset.caseId + "/merchant-candidates?q=" + encodeURIComponent(search.value.trim());
      const res = await fetch(url, { credentials: "same-origin" });
      const found = res.ok ? await res.json() : [];
      list.innerHTML = "";
      if (!found.length) { const li = document.createElement("li"); li.textContent = strings.noMatch; list.appendChild(li); }
      found.forEach((m) => {
        const text = m.name + " · " + m.address + " · " + distanceText(m.distance_m);
        list.appendChild(candidateItem("<span>" + esc(text) + "</span>", () => {
          const field = form.querySelector('[name="merchant_id"]');
          field.value = m.id;
          field.dataset.name = m.name;
          dialog.close();
          submit(form);
        }));
      });
    }
    let timer = null;
    search.oninput = () => { clearTimeout(timer); timer = setTimeout(load, 250); };
    dialog.showModal();
    search.focus();
    load();
  }

  // ---------------------------------------------------------------- bulk
  function picked() { return Array.from(document.querySelectorAll("#queue .bulk-pick:checked")).map((b) => b.closest(".case-card")); }
  function refreshBulk() {
    const bar = document.querySelector('[data-testid="bulk-bar"]');
    if (!bar) return;
    const n = picked().length;
    bar.hidden = n === 0;
    bar.querySelector(".bulk-count").textContent = fmt(strings.selected, { n });
  }
  document.addEventListener("change", (ev) => {
    if (ev.target.classList && ev.target.classList.contains("bulk-pick")) refreshBulk();
    if (ev.target.matches && ev.target.matches("select[data-autosubmit]")) ev.target.form.submit();
  });
  function openBulk(action) {
    const dialog = document.getElementById("bulk-dialog");
    const chosen = picked();
    const max = parseInt(queue?.dataset.bulkMax || "100", 10);
    if (!dialog || !chosen.length) return;
    const list = chosen.slice(0, max);
    dialog.querySelector(".bulk-title").textContent = fmt(action === "confirm" ? strings.bulkConfirm : strings.bulkDismiss, { n: list.length });
    const preview = dialog.querySelector(".bulk-preview");
    preview.innerHTML = "";
    list.forEach((card) => {
      const li = document.createElement("li");
      li.innerHTML = (card.dataset.thumb ? '<img src="' + esc(card.dataset.thumb) + '" alt="">' : "") + "<span>" + esc(card.dataset.summary) + "</span>";
      preview.appendChild(li);
    });
    dialog.querySelector(".bulk-reason").hidden = action !== "dismiss";
    dialog.returnValue = "";
    dialog.onclose = async () => {
      if (dialog.returnValue !== "ok" || busy) return;
      busy = true;
      const form = new FormData();
      form.append("action", action);
      list.forEach((card) => form.append("case_ids", card.dataset.caseId));
      if (action === "dismiss") form.append("reason", dialog.querySelector('select[name="bulk-reason"]').value);
      try {
        const res = await post("/cases/bulk", form);
        if (!res.ok) { say(res.data.detail || fmt(strings.failed, { status: res.status }), { error: true }); return; }
        const done = res.data.results.filter((r) => r.audit_id);
        done.forEach((r) => { const card = document.getElementById("case-" + r.case_id); if (card) markDone(card, r); });
        const undo = res.data.undo_until ? { auditIds: done.map((r) => r.audit_id), until: res.data.undo_until } : null;
        say(res.data.message, { undo, error: done.length < res.data.results.length });
        refreshBulk();
        advance();
      } catch (err) {
        say(strings.network, { error: true });
      } finally { busy = false; }
    };
    dialog.showModal();
  }
  document.querySelectorAll("[data-bulk]").forEach((b) => b.addEventListener("click", () => {
    if (b.dataset.bulk === "clear") { document.querySelectorAll(".bulk-pick:checked").forEach((x) => { x.checked = false; }); refreshBulk(); return; }
    openBulk(b.dataset.bulk);
  }));

  // ---------------------------------------------------------------- keys and forms
  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    if (!(form instanceof HTMLFormElement)) return;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) { ev.preventDefault(); return; }
    if (form.dataset.action) { ev.preventDefault(); select(form.closest(".case-card")); submit(form); }
  });

  const DECISIONS = new Set(["c", "d", "m", "r", "u"]);
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (document.querySelector("dialog[open]")) return;
    const tag = (ev.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") return;
    if (!queue) return;
    if (DECISIONS.has(ev.key) && (ev.repeat || busy || performance.now() - settledAt < SETTLE_MS)) { ev.preventDefault(); return; }
    const card = current();
    const keys = {
      j: () => step(1),
      k: () => step(-1),
      c: () => { const f = actionForm(card, "confirm"); if (f) submit(f); },
      d: () => openDismiss(card),
      m: () => openMerge(card),
      r: () => openReassign(card),
      u: () => undoLast(),
      x: () => { const b = card && card.querySelector(".bulk-pick"); if (b) { b.checked = !b.checked; refreshBulk(); } },
      v: () => { const a = card && card.querySelector("[data-viewer]"); if (a) window.location.href = a.href; },
      Enter: () => { const a = card && card.querySelector("h2 a"); if (a) window.location.href = a.href; },
    };
    const handler = keys[ev.key];
    if (handler && (card || ev.key === "j" || ev.key === "k" || ev.key === "u")) { ev.preventDefault(); handler(); }
  });

  // ---------------------------------------------------------------- evidence viewer
  function setupViewer(root) {
    const stage = root.querySelector(".viewer-stage");
    const canvas = root.querySelector(".viewer-canvas");
    const image = root.querySelector(".viewer-image");
    const overlay = root.querySelector(".viewer-overlay");
    const info = root.querySelector(".viewer-info");
    const frames = Array.from(root.querySelectorAll(".viewer-strip .frame"));
    const view = { scale: 1, x: 0, y: 0 };
    function apply() { canvas.style.transform = "translate(" + view.x + "px," + view.y + "px) scale(" + view.scale + ")"; root.dataset.zoom = view.scale.toFixed(2); }
    function fit() { view.scale = 1; view.x = 0; view.y = 0; apply(); }
    function zoom(factor, cx, cy) {
      const rect = stage.getBoundingClientRect();
      const px = (cx === undefined ? rect.width / 2 : cx - rect.left);
      const py = (cy === undefined ? rect.height / 2 : cy - rect.top);
      const next = Math.max(1, Math.min(8, view.scale * factor));
      view.x = px - (px - view.x) * (next / view.scale);
      view.y = py - (py - view.y) * (next / view.scale);
      view.scale = next;
      if (next === 1) { view.x = 0; view.y = 0; }
      apply();
    }
    function draw(button) {
      const w = parseFloat(button.dataset.width) || image.naturalWidth || 1;
      const h = parseFloat(button.dataset.height) || image.naturalHeight || 1;
      overlay.setAttribute("viewBox", "0 0 " + w + " " + h);
      overlay.innerHTML = "";
      const ns = "http://www.w3.org/2000/svg";
      const zone = JSON.parse(button.dataset.zone || "[]");
      if (zone.length >= 3) {
        const poly = document.createElementNS(ns, "polygon");
        poly.setAttribute("points", zone.map((p) => p.join(",")).join(" "));
        poly.setAttribute("class", "zone");
        overlay.appendChild(poly);
      }
      JSON.parse(button.dataset.boxes || "[]").forEach((b) => {
        const rect = document.createElementNS(ns, "rect");
        rect.setAttribute("x", b.x1); rect.setAttribute("y", b.y1);
        rect.setAttribute("width", Math.max(1, b.x2 - b.x1)); rect.setAttribute("height", Math.max(1, b.y2 - b.y1));
        rect.setAttribute("class", b.emphasis === "context" ? "context" : "subject");
        overlay.appendChild(rect);
      });
    }
    function show(button) {
      frames.forEach((f) => f.classList.toggle("current", f === button));
      image.onload = () => draw(button);
      image.src = button.dataset.src;
      info.textContent = button.dataset.caption + " · " + (frames.indexOf(button) + 1) + "/" + frames.length;
      fit();
    }
    frames.forEach((f) => f.addEventListener("click", () => show(f)));
    root.querySelectorAll("[data-zoom]").forEach((b) => b.addEventListener("click", () => {
      if (b.dataset.zoom === "in") zoom(1.5); else if (b.dataset.zoom === "out") zoom(1 / 1.5); else fit();
    }));
    root.querySelector("[data-overlay]")?.addEventListener("change", (ev) => { overlay.style.display = ev.target.checked ? "" : "none"; });
    stage.addEventListener("wheel", (ev) => { ev.preventDefault(); zoom(ev.deltaY < 0 ? 1.25 : 0.8, ev.clientX, ev.clientY); }, { passive: false });
    stage.addEventListener("dblclick", (ev) => zoom(2, ev.clientX, ev.clientY));
    let drag = null;
    stage.addEventListener("pointerdown", (ev) => { drag = { x: ev.clientX - view.x, y: ev.clientY - view.y }; stage.setPointerCapture(ev.pointerId); });
    stage.addEventListener("pointermove", (ev) => { if (drag && view.scale > 1) { view.x = ev.clientX - drag.x; view.y = ev.clientY - drag.y; apply(); } });
    stage.addEventListener("pointerup", () => { drag = null; });
    stage.addEventListener("keydown", (ev) => {
      const i = frames.findIndex((f) => f.classList.contains("current"));
      if (ev.key === "+" || ev.key === "=") zoom(1.5);
      else if (ev.key === "-") zoom(1 / 1.5);
      else if (ev.key === "0") fit();
      else if (ev.key === "ArrowRight" && i < frames.length - 1) show(frames[i + 1]);
      else if (ev.key === "ArrowLeft" && i > 0) show(frames[i - 1]);
      else return;
      ev.preventDefault();
    });
    if (frames.length) show(frames[frames.length - 1]);
  }
  document.querySelectorAll(".viewer").forEach(setupViewer);

  // ---------------------------------------------------------------- deadlines
  document.querySelectorAll(".countdown[data-deadline]").forEach((el) => {
    const due = Date.parse(el.dataset.deadline);
    const tick = () => {
      const s = Math.max(0, Math.round((due - Date.now()) / 1000));
      el.textContent = (el.dataset.left || "") + " " + Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
    };
    tick();
    setInterval(tick, 1000);
  });

  // an inspector's photo: the file's name beside the big button (the native control is hidden)
  document.querySelectorAll(".photo-pick input[type=file]").forEach((input) => input.addEventListener("change", () => {
    const name = input.closest(".photo-pick").querySelector(".photo-name");
    if (name) name.textContent = input.files && input.files[0] ? input.files[0].name : "";
  }));
  // phones: the filters fold away unless one is in use
  const more = document.querySelector("details.more-filters");
  if (more && window.matchMedia("(max-width: 720px)").matches && !more.dataset.active) more.open = false;

  function start() {
    const list = openCards();
    if (list.length) select(list[0]);
    const saved = JSON.parse(sessionStorage.getItem("streetwatch-undo") || "null");
    if (saved && Date.parse(saved.until) > Date.now()) say(saved.summary || strings.undo || "", { undo: saved });
    document.documentElement.classList.add("js");
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
