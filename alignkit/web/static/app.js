// alignkit annotation pages: keyboard shortcuts, drafts saved to the server, submit/skip, lease
// countdown, admin buttons. Everything shown is set with textContent; nothing here builds HTML.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  async function call(method, url, body, extra) {
    const headers = Object.assign({ "Content-Type": "application/json", "X-CSRF-Token": csrf }, extra || {});
    const r = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    return { ok: r.ok, status: r.status, data };
  }

  // ---- the task page -------------------------------------------------------------------------
  const form = document.getElementById("task");
  if (form) {
    const project = encodeURIComponent(form.dataset.project), taskId = form.dataset.task, type = form.dataset.type;
    const base = `/api/v1/projects/${project}/tasks/${taskId}`;
    const status = document.getElementById("status");
    const rank = document.getElementById("rank");
    const say = (text) => { status.textContent = text; };

    function formState() {
      const state = {};
      for (const el of form.elements) {
        if (!el.name) continue;
        if (el.type === "radio") { if (el.checked) state[el.name] = el.value; }
        else if (el.type === "checkbox") { state[el.name] = state[el.name] || []; if (el.checked) state[el.name].push(el.value); }
        else state[el.name] = el.value;
      }
      if (rank) state["__order"] = [...rank.children].map((li) => Number(li.dataset.index));
      return state;
    }

    function restore(state) {
      for (const el of form.elements) {
        if (!el.name || !(el.name in state)) continue;
        const v = state[el.name];
        if (el.type === "radio") el.checked = el.value === v;
        else if (el.type === "checkbox") el.checked = Array.isArray(v) && v.includes(el.value);
        else el.value = v;
      }
      if (rank && Array.isArray(state["__order"])) {
        const items = Object.fromEntries([...rank.children].map((li) => [li.dataset.index, li]));
        for (const i of state["__order"]) if (items[i]) rank.appendChild(items[i]);
      }
    }

    function answer() {
      const s = formState(), blank = (x) => !x || !String(x).trim();
      if (type === "compare") {
        const a = { overall: s.overall, criteria: {}, harms: s.harms || [] };
        for (const k in s) if (k.startsWith("criteria.")) a.criteria[k.slice(9)] = s[k];
        if ((s.both_bad || []).length) a.both_bad = true;
        if (s.strength) a.strength = Number(s.strength);
        if (!blank(s.rationale)) a.rationale = s.rationale;
        return a;
      }
      if (type === "review_completion") {
        const a = { decision: s.decision };
        if (s.decision === "edit") a.edited_text = s.edited_text;
        if (!blank(s.reason)) a.reason = s.reason;
        return a;
      }
      if (type === "verify_prompt") { const a = { accept: s.accept === "true" }; if (!blank(s.reason)) a.reason = s.reason; return a; }
      if (type === "write_prompt") return { text: s.text };
      if (type === "write_completion") return { text: s.text, domain: s.domain };
      if (type === "rank") return { order: s["__order"] };
      if (type === "rate") return { score: Number(s.score) };
      if (type === "binary") return { good: s.good === "true" };
      if (type === "rules") {
        const v = {};
        for (const el of form.querySelectorAll('input[name="violations"]')) v[el.value] = el.checked;
        return { violations: v };
      }
      if (type === "qa") {
        const a = {};
        for (const k in s) if (k.startsWith("qa.")) a[k.slice(3)] = s[k];
        return { answers: a };
      }
      return {};
    }

    let timer = null, saving = Promise.resolve();
    function saveSoon() {
      clearTimeout(timer);
      timer = setTimeout(() => {
        saving = call("PUT", base + "/draft", { draft: formState() }).then((r) => say(r.ok ? "draft saved" : "draft not saved (" + r.status + ")"));
      }, 300);
    }
    form.addEventListener("input", saveSoon);
    form.addEventListener("change", saveSoon);

    // A model's pre-label, as form state: pre-filled only when there is no draft, and marked.
    function fromAnswer(a) {
      const s = {};
      if (type === "compare") {
        s.overall = a.overall; s.harms = a.harms || []; s.both_bad = a.both_bad ? ["yes"] : [];
        if (a.strength) s.strength = String(a.strength);
        if (a.rationale) s.rationale = a.rationale;
        for (const c in a.criteria || {}) s["criteria." + c] = a.criteria[c];
      } else if (type === "review_completion") {
        s.decision = a.decision; if (a.edited_text) s.edited_text = a.edited_text; if (a.reason) s.reason = a.reason;
      } else if (type === "verify_prompt") {
        s.accept = String(a.accept); if (a.reason) s.reason = a.reason;
      } else if (type === "write_prompt" || type === "write_completion") {
        s.text = a.text; if (a.domain) s.domain = a.domain;
      } else if (type === "rank") s["__order"] = a.order;
      else if (type === "rate") s.score = String(a.score);
      else if (type === "binary") s.good = String(a.good);
      else if (type === "rules") s.violations = Object.keys(a.violations || {}).filter((r) => a.violations[r]);
      else if (type === "qa") for (const q in a.answers || {}) s["qa." + q] = a.answers[q];
      return s;
    }

    const draft = JSON.parse(document.getElementById("draft").textContent || "null");
    const suggestion = JSON.parse(document.getElementById("suggestion").textContent || "null");
    if (draft) { restore(draft); say("draft restored"); }
    else if (suggestion) {
      const state = fromAnswer(suggestion);
      restore(state);
      for (const el of form.elements) {
        if (!el.name || !(el.name in state)) continue;
        const mark = el.type === "radio" || el.type === "checkbox" ? (el.checked ? el.closest("label") : null) : el;
        if (mark) mark.classList.add("suggested");
      }
      if (rank && state["__order"]) rank.classList.add("suggested");
      say("model suggestion pre-filled");
    }

    // An idempotency key per task, kept across reloads, so a retried submit is never counted twice.
    const keyName = "alignkit-key-" + taskId;
    const idemKey = sessionStorage.getItem(keyName) || (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2) + Date.now());
    sessionStorage.setItem(keyName, idemKey);

    async function goNext() {
      const r = await call("POST", `/api/v1/projects/${project}/next`, {});
      if (r.ok && r.data.task) location.assign(`/p/${project}/task/${r.data.task.id}`);
      else location.assign(`/p/${project}?m=${r.ok ? "done" : r.status}`);
    }

    async function submit() {
      clearTimeout(timer);
      await saving;
      say("submitting…");
      const r = await call("POST", base + "/submit", { answer: answer() }, { "Idempotency-Key": idemKey });
      if (r.ok) { sessionStorage.removeItem(keyName); say("submitted"); await goNext(); }
      else say("not accepted: " + (r.data && r.data.detail ? (typeof r.data.detail === "string" ? r.data.detail : JSON.stringify(r.data.detail)) : r.status));
    }

    async function skip() {
      const r = await call("POST", base + "/skip");
      if (r.ok) await goNext(); else say("could not skip (" + r.status + ")");
    }

    form.addEventListener("submit", (e) => { e.preventDefault(); submit(); });
    document.getElementById("skip").addEventListener("click", skip);

    document.getElementById("report").addEventListener("click", async () => {
      const reason = document.getElementById("report-reason").value;
      const r = await call("POST", base + "/flag", { reason });
      if (r.ok) await goNext(); else say("report not sent (" + r.status + "): give a reason");
    });

    // Shortcuts: a data-key may be one key or a sequence ("m3": m, then 3). Codes on a page are
    // prefix-free, so a key that starts a longer code waits (shown in #pending-keys) for the next.
    const keyed = [...form.querySelectorAll("[data-key]")].map((el) => [el.dataset.key, el]).filter(([k]) => k);
    const rankKeys = rank ? rank.dataset.keys.split(" ").filter(Boolean) : [];
    const pendingShown = document.getElementById("pending-keys");
    let prefix = "";
    function press(key) {
      const seq = prefix + key;
      const exact = keyed.find(([k]) => k === seq);
      const place = rankKeys.indexOf(seq);
      if (exact || place >= 0) {
        prefix = ""; pendingShown.textContent = "";
        if (exact) { const el = exact[1]; el.click(); if (el.type === "radio" || el.type === "checkbox") saveSoon(); }
        else if (rank.children[place]) rank.children[place].focus();
        return true;
      }
      if (keyed.some(([k]) => k.startsWith(seq)) || rankKeys.some((k) => k.startsWith(seq))) {
        prefix = seq; pendingShown.textContent = seq + "…";
        return true;
      }
      const had = prefix !== "";
      prefix = ""; pendingShown.textContent = "";
      return had ? press(key) : false;  // a wrong second key starts over from itself
    }

    document.addEventListener("keydown", (e) => {
      const t = e.target, typing = t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && !["radio", "checkbox"].includes(t.type));
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey || !typing)) { e.preventDefault(); submit(); return; }
      if (typing) { if (e.key === "Escape") t.blur(); return; }
      if (e.key === "Escape") { prefix = ""; pendingShown.textContent = ""; return; }
      if (rank && t.parentElement === rank && (e.key === "ArrowUp" || e.key === "ArrowDown")) {
        e.preventDefault();
        const other = e.key === "ArrowUp" ? t.previousElementSibling : t.nextElementSibling;
        if (other) { rank.insertBefore(t, e.key === "ArrowUp" ? other : other.nextElementSibling); t.focus(); saveSoon(); }
        return;
      }
      if (e.ctrlKey || e.altKey || e.metaKey) return;
      if (e.key === "/") {  // jump to the first text field (rationale, edit, reason)
        const field = form.querySelector("textarea, input:not([type=radio]):not([type=checkbox]):not([type=hidden])");
        if (field) { e.preventDefault(); field.focus(); }
        return;
      }
      if (e.key.length === 1 && press(e.key)) e.preventDefault();
    });

    if (rank) {
      let dragged = null;
      rank.addEventListener("dragstart", (e) => { dragged = e.target.closest("li"); });
      rank.addEventListener("dragover", (e) => e.preventDefault());
      rank.addEventListener("drop", (e) => {
        e.preventDefault();
        const target = e.target.closest("li");
        if (!dragged || !target || dragged === target) return;
        // Dropped on an item: take its place (moving down lands after it, moving up before it).
        const down = [...rank.children].indexOf(dragged) < [...rank.children].indexOf(target);
        rank.insertBefore(dragged, down ? target.nextElementSibling : target);
        rank.classList.remove("suggested");
        saveSoon();
      });
    }

    const countdown = document.getElementById("countdown");
    const expires = Date.parse(countdown.dataset.expires);
    const tick = () => {
      const s = Math.max(0, Math.round((expires - Date.now()) / 1000));
      countdown.textContent = s > 0 ? `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}` : "expired: reload for a new task";
    };
    tick();
    setInterval(tick, 1000);
  }

  // ---- the admin page ---------------------------------------------------------------------------
  const actions = document.getElementById("admin-actions");
  if (actions) {
    const project = encodeURIComponent(actions.dataset.project), out = document.getElementById("admin-output");
    const show = (r) => { out.textContent = JSON.stringify(r.data, null, 1); };
    const adminUrl = `/api/v1/projects/${project}/admin`;
    for (const b of document.querySelectorAll("button.act")) {
      b.addEventListener("click", async () => {
        const body = b.dataset.super ? { super_rater: true } : { status: b.dataset.status };
        const r = await call("POST", `${adminUrl}/annotators/${encodeURIComponent(b.dataset.name)}`, body);
        if (r.ok) location.reload(); else show(r);
      });
    }
    for (const b of document.querySelectorAll("button.resolve")) {
      b.addEventListener("click", async () => {
        const body = { action: b.dataset.action };
        if (b.dataset.action === "adjudicate") {
          try { body.answer = JSON.parse(b.closest("article").querySelector("textarea.decision").value); }
          catch (e) { out.textContent = "the decision is not valid JSON"; return; }
        }
        const r = await call("POST", `${adminUrl}/review/${b.dataset.flag}`, body);
        if (r.ok) location.reload(); else show(r);
      });
    }
    document.getElementById("run-quality").addEventListener("click", async () =>
      show(await call("POST", `${adminUrl}/quality`, { screen: true, flag_spammers: true, super_raters: true })));
    for (const b of document.querySelectorAll("button.aggregate"))
      b.addEventListener("click", async () => show(await call("POST", `${adminUrl}/aggregate`, { stage: b.dataset.stage })));
    const exp = document.getElementById("export");
    exp.addEventListener("click", async () => show(await call("POST", `${adminUrl}/export`, { kind: exp.dataset.kind })));
    document.getElementById("invite").addEventListener("click", async () => show(await call("POST", `${adminUrl}/invitations`, {})));
  }
})();
