/* The citizen page: sign in with a citizen token, then read and act through /v1/me only. */
"use strict";
(function () {
  const TEXT = window.OsmanthusText, V = window.OsmanthusViews;
  const SECTIONS = ["score", "reasons", "records", "perks", "review", "consents", "access"];
  const S = {
    lang: localStorage.getItem("osmanthus.lang") === "en" ? "en" : "zh",
    token: sessionStorage.getItem("osmanthus.token") || "",
    shown: {}, openSources: new Set(), disputing: null, confirmNeeded: {}, draft: {}, granted: null, consentPartner: null, partnerNames: {},
  };
  const $ = (id) => document.getElementById(id);
  const T = () => TEXT[S.lang];

  class Failure extends Error {
    constructor(status, body) { super((body && body.message) || `HTTP ${status}`); this.status = status; this.body = body; }
  }

  async function api(path, method, body) {
    let res;
    try {
      res = await fetch(`/v1/me${path}`, {
        method: method || "GET", cache: "no-store",
        headers: { Authorization: `Bearer ${S.token}`, "Accept-Language": S.lang, ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch (err) {
      throw new Failure(0, { message: T().errors.network });
    }
    const data = await res.json().catch(() => null);
    if (!res.ok) throw new Failure(res.status, data);
    return data;
  }

  function say(message, isError) {
    $("alert").textContent = isError ? message : "";
    $("status").textContent = isError ? "" : message;
  }
  // An API field → the name of the form control it came from.
  const CONTROLS = { partner_id: "partner", perks: "perk", until: "until", statement: "statement", reason: "reason", perk_id: "perk", confirm: "confirm" };

  /** Field errors go next to their field, in the page's language (the API's own words are
   * English and for developers); the first field gets the focus. */
  function markFields(errors) {
    document.querySelectorAll(".field-error.api").forEach((n) => n.remove());
    let first = null;
    for (const field of Object.keys(errors || {})) {
      const name = CONTROLS[field] || field;
      const control = [...document.querySelectorAll(`form [name="${name}"]`)].find((c) => c.offsetParent !== null);
      if (!control) continue;
      const id = `error-${name}`, text = T().fieldErrors[field] || T().fieldErrors.default;
      const note = document.createElement("p");
      Object.assign(note, { className: "field-error api", id, textContent: text });
      note.setAttribute("role", "alert");
      (control.closest("fieldset") || control).insertAdjacentElement("afterend", note);
      control.setAttribute("aria-invalid", "true");
      control.setAttribute("aria-describedby", id);
      first = first || control;
    }
    if (first) first.focus();
    return Boolean(first);
  }

  function fail(err) {
    const known = T().errors[err.status];
    let message = known || err.message;
    const fields = err.body && err.body.errors && Object.keys(err.body.errors).length ? err.body.errors : null;
    if (fields && !markFields(fields)) {
      message += ` (${Object.entries(fields).map(([k, v]) => `${k}: ${[].concat(v).join(", ")}`).join("; ")})`;
    }
    say(message, true);
    if (err.status === 401 || err.status === 403) signOut(true);
  }

  async function load() {
    const [score, explanation, records, perks, review, consents, access, advice] = await Promise.all([
      api("/score"), api("/explanation"), api("/records"), api("/perks"), api("/review"), api("/consents"), api("/access-log"), api("/advice"),
    ]);
    Object.assign(S, { score, explanation, records, perks, review, consents, access: access.entries, treeHead: access.tree_head, accessStates: null, advice });
    perks.perks.forEach((p) => { S.partnerNames[p.partner_id] = p.partner_name; });
    render();
    verifyAccess(access);
  }

  /** Check every access-log entry in this browser (verify.js) against the published audit
   * keys, then show the outcome. A later load replaces this one's answer, never the reverse. */
  async function verifyAccess(log) {
    let keys = null;
    try {
      const res = await fetch("/.well-known/osmanthus-audit-keys.json", { cache: "no-store" });
      if (res.ok) keys = await res.json();
    } catch (err) { keys = null; }  // no keys: every sealed entry shows "does not verify"
    const states = await window.OsmanthusVerify.checkLog(log, keys);
    if (S.access !== log.entries || !S.score) return;
    S.accessStates = states;
    $("access-body").replaceChildren(...V.access(T(), S));
  }

  function renderStatic() {
    const t = T();
    document.documentElement.lang = t.htmlLang;
    document.title = t.title;
    document.querySelectorAll("[data-t]").forEach((node) => { node.textContent = t[node.dataset.t]; });
    $("lang-switch").textContent = t.switchTo;
    $("lang-switch").setAttribute("aria-label", t.switchLabel);
    $("lang-switch").setAttribute("lang", S.lang === "zh" ? "en" : "zh-CN");
  }

  function render() {
    renderStatic();
    if (!S.score) return;
    const t = T();
    const views = { score: V.score, reasons: V.reasons, records: V.records, perks: V.perks, review: V.review, consents: V.consents, access: V.access };
    for (const name of SECTIONS) $(`${name}-body`).replaceChildren(...views[name](t, S, actions));
  }

  async function act(work, done) {
    try {
      const message = await work();
      await load();
      if (message) say(message);
      if (done) done();
    } catch (err) { fail(err); }
  }

  const actions = {
    startDispute(r) {
      S.disputing = V.recordKey(r); render();
      const box = $(`statement-${r.record_id}`);
      if (box) box.focus();
    },
    cancelDispute() { S.disputing = null; render(); },
    dispute(r, statement, confirm) {
      const key = V.recordKey(r);
      S.draft[key] = statement;
      act(async () => {
        let out;
        try {
          out = await api("/disputes", "POST", { source: r.source, record_id: r.record_id, statement, confirm: Boolean(confirm) });
        } catch (err) {
          const warn = err.status === 422 && err.body && err.body.errors && err.body.errors.confirm;
          if (!warn) throw err;
          S.confirmNeeded[key] = T().confirmWarning;  // in the page's language, next to the field
          render();
          const box = $(`confirm-${r.record_id}`);
          if (box) box.focus();
          return null;
        }
        S.disputing = null; delete S.confirmNeeded[key]; delete S.draft[key];
        return T().disputeDone(out.dispute.due_on);
      }, () => {
        if (S.disputing) { const box = $(`confirm-${r.record_id}`); if (box) box.focus(); return; }
        const rec = $(`rec-${r.source}-${r.record_id}`);  // focus moves to the confirmation
        if (rec) { rec.scrollIntoView({ block: "center" }); rec.setAttribute("tabindex", "-1"); rec.focus(); }
      });
    },
    withdrawDispute(id) { act(async () => { await api(`/disputes/${encodeURIComponent(id)}`, "DELETE"); return T().disputeWithdrawn; }); },
    withdrawReview(id) { act(async () => { await api(`/review/${encodeURIComponent(id)}`, "DELETE"); return T().reviewWithdrawn; }); },
    showMore(source) { S.shown[source] = (S.shown[source] || 8) + 20; render(); },
    toggleSmaller() { S.smallerOpen = !S.smallerOpen; render(); $("smaller-toggle").focus(); },
    showRecord(source, recordId) {
      const list = S.records.records.filter((r) => r.source === source);
      const index = list.findIndex((r) => r.record_id === recordId);
      S.openSources.add(source);
      S.shown[source] = Math.max(S.shown[source] || 8, index + 1);
      render();
      const rec = $(`rec-${source}-${recordId}`);
      if (rec) { rec.scrollIntoView({ block: "center" }); rec.setAttribute("tabindex", "-1"); rec.focus(); }
    },
    askReview(perk, reason) { act(async () => { await api("/review", "POST", { perk_id: perk, reason }); return T().reviewDone; }); },
    choosePartner(id) { S.consentPartner = id; S.grantKey = null; render(); $("consent-partner").focus(); },
    grantChanged() { S.grantKey = null; },
    grant(partner, perks, until) {
      // one idempotency key per grant: a double click (or a click after the first answer came)
      // sends the same key and gets the same consent back, never a second one. A new key
      // comes when the form is changed, a consent is revoked, or the citizen signs out.
      // While the first request is on its way a second submit is dropped here, so the page draws
      // one code and moves focus once; the key still covers a click after the answer arrived.
      if (S.granting) return;
      S.granting = true;
      S.grantKey = S.grantKey || `g-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
      const key = S.grantKey;
      act(async () => {
        const out = await api("/consents", "POST", { partner_id: partner, perks, until, idempotency_key: key });
        S.granted = { consent_id: out.consent.consent_id, token: out.token, qr_svg: out.qr_svg };
        return "";
      }, () => { const qr = $("consent-qr"); if (qr) { qr.scrollIntoView({ block: "center" }); qr.setAttribute("tabindex", "-1"); qr.focus(); } })
        .finally(() => { S.granting = false; });
    },
    revoke(consent) {
      act(async () => {
        await api(`/consents/${encodeURIComponent(consent.consent_id)}`, "DELETE");
        S.grantKey = null;
        if (S.granted && S.granted.consent_id === consent.consent_id) S.granted = null;
        return T().revoked;
      });
    },
    async copy(text, button) {
      try { await navigator.clipboard.writeText(text); button.textContent = T().copied; } catch (err) { $("consent-token").select(); }
    },
  };

  async function signIn(token) {
    S.token = token.trim();
    say(T().loading);
    try {
      await load();
      sessionStorage.setItem("osmanthus.token", S.token);
      $("sign-in").hidden = true; $("signed-in").hidden = false; $("sign-out").hidden = false;
      say("");
      $("score-title").focus();
    } catch (err) { fail(err); }
  }

  function signOut(keepMessage) {
    sessionStorage.removeItem("osmanthus.token");
    Object.assign(S, { token: "", score: null, granted: null, disputing: null, confirmNeeded: {}, draft: {}, grantKey: null });
    $("token").value = "";  // the next person must not sign in as this one
    $("sign-in").hidden = false; $("signed-in").hidden = true; $("sign-out").hidden = true;
    for (const name of SECTIONS) $(`${name}-body`).replaceChildren();
    if (!keepMessage) say(T().signedOut);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("lang-switch").addEventListener("click", () => {
      S.lang = S.lang === "zh" ? "en" : "zh";
      localStorage.setItem("osmanthus.lang", S.lang);
      say("");
      render();
    });
    $("sign-out").addEventListener("click", () => signOut(false));
    $("sign-in-form").addEventListener("submit", (ev) => { ev.preventDefault(); signIn($("token").value); });
    renderStatic();
    cityReturn().then((came) => { if (!came && S.token) signIn(S.token); });
    OsmanthusSignIn.settings().then((provider) => {
      if (!provider) return;
      $("city-sign-in").hidden = false;
      $("city-sign-in-button").addEventListener("click", () => OsmanthusSignIn.go(provider));
    });
  });

  /* Back from the city's sign-in (signin.js): sign in with its token, or say what failed. */
  async function cityReturn() {
    try {
      const token = await OsmanthusSignIn.returned();
      if (!token) return false;
      await signIn(token);
    } catch (err) {
      say(T().cityFailed[err.code] || T().cityFailed.provider, true);
    }
    return true;
  }
})();
