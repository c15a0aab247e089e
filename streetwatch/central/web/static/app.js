// StreetWatch review queue: keyboard-first actions on server-rendered case cards.
// j/k move the selection, c confirm, d dismiss (pick a reason 1..n), m merge, r reassign, Enter open.
// Every action is the card's own <form> (works without JS); this script only submits it with fetch,
// sending the CSRF token as a header as well, and marks the card done instead of reloading the page.
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const toast = document.getElementById("toast");
  let selected = 0;

  function cards() { return Array.from(document.querySelectorAll("#queue .case-card:not(.done)")); }

  function select(index) {
    const list = cards();
    document.querySelectorAll(".case-card.selected").forEach((el) => el.classList.remove("selected"));
    if (!list.length) { selected = 0; return null; }
    selected = Math.max(0, Math.min(index, list.length - 1));
    const card = list[selected];
    card.classList.add("selected");
    card.scrollIntoView({ block: "nearest" });
    return card;
  }

  function current() { return cards()[selected] || null; }

  function say(message, isError) {
    if (!toast) return;
    toast.textContent = message;
    toast.className = isError ? "error" : "";
    toast.style.display = "block";
    clearTimeout(say.timer);
    say.timer = setTimeout(() => { toast.style.display = "none"; }, 4000);
  }

  async function submit(form) {
    const card = form.closest(".case-card");
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { "X-CSRF-Token": csrf, "Accept": "application/json" },
        credentials: "same-origin",
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) { say(body.detail || ("failed: HTTP " + response.status), true); return; }
      say(body.message || "done");
      if (card && body.still_open) {
        markReassigned(card, form);
      } else if (card && document.querySelectorAll("#queue .case-card").length > 1) {
        card.classList.add("done");
        card.classList.remove("selected");
        card.querySelectorAll(".actions").forEach((el) => el.remove());
        const badge = card.querySelector('[data-testid="status"]');
        if (badge && body.status) { badge.textContent = body.status; badge.className = "badge status-" + body.status; }
        select(selected);
      } else {
        window.location.reload();
      }
    } catch (err) {
      say("network error: " + err, true);
    }
  }

  // The case stays in the queue after a reassignment: show the new merchant in place.
  function markReassigned(card, form) {
    const field = form.querySelector('[name="merchant_id"]');
    const cell = card.querySelector('[data-testid="merchant"]');
    if (field && cell) { cell.textContent = field.value + " (reassigned, manual)"; }
    field.value = "";
  }

  function actionForm(card, action) { return card && card.querySelector('form[data-action="' + action + '"]'); }

  function openDismiss(card) {
    const dialog = document.getElementById("dismiss-dialog");
    const form = actionForm(card, "dismiss");
    if (!dialog || !form) return;
    dialog.querySelector(".dialog-case").textContent = "#" + card.dataset.caseId;
    const buttons = Array.from(dialog.querySelectorAll("button[data-reason]"));
    function choose(reason) {
      form.querySelector('[name="reason"]').value = reason;
      dialog.close();
      submit(form);
    }
    buttons.forEach((b) => { b.onclick = () => choose(b.dataset.reason); });
    dialog.onkeydown = (ev) => {
      const n = parseInt(ev.key, 10);
      if (n >= 1 && n <= buttons.length) { ev.preventDefault(); choose(buttons[n - 1].dataset.reason); }
    };
    dialog.showModal();
    buttons[0]?.focus();
  }

  function openValueDialog(card, dialogId, action, field) {
    const dialog = document.getElementById(dialogId);
    const form = actionForm(card, action);
    if (!dialog || !form) return;
    dialog.querySelector(".dialog-case").textContent = "#" + card.dataset.caseId;
    const input = dialog.querySelector('input[name="value"]');
    input.value = "";
    const list = form.querySelector("datalist");
    if (list) { input.setAttribute("list", list.id); } else { input.removeAttribute("list"); }
    dialog.onclose = () => {
      if (dialog.returnValue === "ok" && input.value.trim()) {
        form.querySelector('[name="' + field + '"]').value = input.value.trim();
        submit(form);
      }
    };
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
  }

  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    if (form instanceof HTMLFormElement && form.dataset.action) { ev.preventDefault(); submit(form); }
  });

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (document.querySelector("dialog[open]")) return;
    const tag = (ev.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") return;
    const card = current();
    const keys = {
      j: () => select(selected + 1),
      k: () => select(selected - 1),
      c: () => { const f = actionForm(card, "confirm"); if (f) submit(f); },
      d: () => openDismiss(card),
      m: () => openValueDialog(card, "merge-dialog", "merge", "into_case_id"),
      r: () => openValueDialog(card, "reassign-dialog", "reassign", "merchant_id"),
      Enter: () => { const a = card && card.querySelector("h2 a"); if (a) window.location.href = a.href; },
    };
    const handler = keys[ev.key];
    if (handler && (card || ev.key === "j" || ev.key === "k")) { ev.preventDefault(); handler(); }
  });

  document.addEventListener("DOMContentLoaded", () => { select(0); });
  if (document.readyState !== "loading") select(0);
})();
